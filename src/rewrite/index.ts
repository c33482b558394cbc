import type { Matcher } from './matcher.ts';
import { logqlRewriter, parseLogQLMatchers } from './logql.ts';
import { parseMatcherExpression, promqlRewriter } from './promql.ts';
import { parseTraceQLMatchers, traceqlRewriter } from './traceql.ts';
import type { QueryLanguage, QueryRewriter } from './rewriter.ts';

/** The rewriters by language. */
const REWRITERS: Record<QueryLanguage, QueryRewriter> = { promql: promqlRewriter, logql: logqlRewriter, traceql: traceqlRewriter };

/** `--matcher` / policy matcher text in each language's own syntax. */
const MATCHER_PARSERS: Record<QueryLanguage, (text: string) => Matcher[]> = { promql: parseMatcherExpression, logql: parseLogQLMatchers, traceql: parseTraceQLMatchers };

export type SupportedLanguage = QueryLanguage;

export function isSupportedLanguage(lang: string): lang is QueryLanguage {
  return lang === 'promql' || lang === 'logql' || lang === 'traceql';
}

export function getRewriter(lang: QueryLanguage): QueryRewriter {
  return REWRITERS[lang];
}

export function parseMatchers(lang: QueryLanguage, text: string): Matcher[] {
  return MATCHER_PARSERS[lang](text);
}
