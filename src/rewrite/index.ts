import { QueryError } from '../errors.ts';
import type { Matcher } from './matcher.ts';
import { parseMatcherExpression, promqlRewriter } from './promql.ts';
import type { QueryLanguage, QueryRewriter } from './rewriter.ts';

/** The rewriters by language. LogQL and TraceQL register here as they land. */
const REWRITERS: Partial<Record<QueryLanguage, QueryRewriter>> = { promql: promqlRewriter };

/** `--matcher` / policy matcher text in each language's own syntax. */
const MATCHER_PARSERS: Partial<Record<QueryLanguage, (text: string) => Matcher[]>> = { promql: parseMatcherExpression };

export type SupportedLanguage = QueryLanguage;

export function isSupportedLanguage(lang: string): lang is QueryLanguage {
  return lang === 'promql' || lang === 'logql' || lang === 'traceql';
}

export function getRewriter(lang: QueryLanguage): QueryRewriter {
  const r = REWRITERS[lang];
  if (r === undefined) throw new QueryError(lang, `${lang} rewriting is not available in this build`, 'rewrite_unsupported');
  return r;
}

export function parseMatchers(lang: QueryLanguage, text: string): Matcher[] {
  const p = MATCHER_PARSERS[lang];
  if (p === undefined) throw new QueryError(lang, `${lang} matchers are not available in this build`, 'rewrite_unsupported');
  return p(text);
}
