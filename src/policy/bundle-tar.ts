/**
 * Reading an OPA bundle archive: gzip (node:zlib) around a POSIX tar, as Go's
 * archive/tar writes it for `opa build`. A deliberately small reader: regular
 * files and directories only (ustar, with PAX `path` records and GNU long
 * names for paths over 100 bytes); links, devices and anything else are
 * rejected, as are absolute escapes (`..`), duplicate paths, bad header
 * checksums, truncated archives, and what Go's reader (OPA's) would read
 * otherwise (PAX `size` and sparse records, a lone zero block before a header). Sizes are bounded so a gzip bomb fails
 * instead of exhausting memory.
 */
import { gunzipSync } from 'node:zlib';

export class BundleFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleFormatError';
  }
}

export interface TarLimits {
  /** Largest accepted uncompressed archive, bytes. */
  maxUncompressedBytes: number;
}

export const DEFAULT_MAX_UNCOMPRESSED_BYTES = 128 * 1024 * 1024;

const BLOCK = 512;

function field(header: Uint8Array, offset: number, length: number): string {
  const slice = header.subarray(offset, offset + length);
  const nul = slice.indexOf(0);
  return Buffer.from(nul === -1 ? slice : slice.subarray(0, nul)).toString('utf8');
}

function octal(header: Uint8Array, offset: number, length: number, what: string): number {
  const first = header[offset];
  if (first !== undefined && (first & 0x80) !== 0) {
    // GNU base-256 for large numbers: never needed for a bundle.
    throw new BundleFormatError(`tar: base-256 ${what} not supported`);
  }
  const text = field(header, offset, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new BundleFormatError(`tar: malformed ${what} field ${JSON.stringify(text)}`);
  return parseInt(text, 8);
}

function checksumOk(header: Uint8Array): boolean {
  const stored = octal(header, 148, 8, 'checksum');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum === stored;
}

/** PAX extended header records: "<len> <key>=<value>\n". */
function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const buf = Buffer.from(data);
  let pos = 0;
  while (pos < buf.length) {
    const space = buf.indexOf(0x20, pos);
    if (space === -1) break;
    const len = Number(buf.subarray(pos, space).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0 || pos + len > buf.length) throw new BundleFormatError('tar: malformed PAX header');
    const record = buf.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    pos += len;
  }
  return out;
}

/**
 * Normalises a member name to the bundle's absolute form ("/data.json",
 * "/policy.wasm", "/a/b/data.json"). Rejects "..", empty names and NUL.
 */
export function normaliseBundlePath(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new BundleFormatError(`tar: path ${JSON.stringify(name)} escapes the bundle`);
  if (name.includes('\0')) throw new BundleFormatError('tar: NUL in a path');
  return '/' + parts.join('/');
}

/** gunzip with a size bound; any gzip error (not gzip, truncated, corrupt) is a BundleFormatError. */
export function gunzipBundle(bytes: Uint8Array, limits: TarLimits = { maxUncompressedBytes: DEFAULT_MAX_UNCOMPRESSED_BYTES }): Uint8Array {
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) throw new BundleFormatError('not a gzip file (an OPA bundle is a .tar.gz)');
  try {
    return gunzipSync(bytes, { maxOutputLength: limits.maxUncompressedBytes });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new BundleFormatError(`bundle is larger than ${limits.maxUncompressedBytes} bytes uncompressed`);
    throw new BundleFormatError(`gzip: ${(e as Error).message}`);
  }
}

/** Regular files of a tar archive, by normalised absolute path, in archive order. */
export function readTar(tar: Uint8Array): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  let pos = 0;
  let longName: string | undefined;
  let pax: Record<string, string> = {};
  let sawEnd = false;
  while (pos + BLOCK <= tar.length) {
    const header = tar.subarray(pos, pos + BLOCK);
    if (header.every((b) => b === 0)) {
      // Go's archive/tar (OPA's reader): the end is two zero blocks; a zero block before a header is an invalid header.
      const next = tar.subarray(pos + BLOCK, pos + 2 * BLOCK);
      if (!next.every((b) => b === 0)) throw new BundleFormatError(`tar: a zero block before a header at offset ${pos}`);
      sawEnd = true;
      break;
    }
    if (!checksumOk(header)) throw new BundleFormatError(`tar: bad header checksum at offset ${pos}`);
    const size = octal(header, 124, 12, 'size');
    const type = String.fromCharCode(header[156] ?? 0);
    const dataStart = pos + BLOCK;
    const dataEnd = dataStart + size;
    if (dataEnd > tar.length) throw new BundleFormatError('tar: truncated archive (member data runs past the end)');
    const data = tar.subarray(dataStart, dataEnd);
    pos = dataStart + Math.ceil(size / BLOCK) * BLOCK;

    if (type === 'x') {
      pax = parsePax(data);
      // Records that change where a member's data is (Go reads them: size, sparse maps) are not read here:
      // refused, so the archive is never read two ways.
      const layout = Object.keys(pax).find((k) => k === 'size' || k.startsWith('GNU.sparse.'));
      if (layout !== undefined) throw new BundleFormatError(`tar: PAX record ${JSON.stringify(layout)} is not supported`);
      continue;
    }
    if (type === 'g') continue; // global PAX header: nothing we use
    if (type === 'L') {
      longName = Buffer.from(data).toString('utf8').replace(/\0+$/, '');
      continue;
    }
    const magic = field(header, 257, 6);
    const prefix = magic.startsWith('ustar') ? field(header, 345, 155) : '';
    const rawName = pax['path'] ?? longName ?? (prefix === '' ? field(header, 0, 100) : `${prefix}/${field(header, 0, 100)}`);
    pax = {};
    longName = undefined;
    if (type === '5') {
      // As Go: a directory has no data, whatever its size field says; the block after its header is the next header.
      pos = dataStart;
      continue;
    }
    // Regular files only: '0', and the old '\0' (which Go reads as a directory when the name ends in "/").
    // OPA loads no other type ('7', contiguous, included), so a member of one is refused, not read as a file.
    if ((type !== '0' && type !== '\0') || (type === '\0' && rawName.endsWith('/'))) {
      throw new BundleFormatError(`tar: member ${JSON.stringify(rawName)} has unsupported type ${JSON.stringify(type)} (only regular files are allowed)`);
    }
    const path = normaliseBundlePath(rawName);
    if (path === '/') throw new BundleFormatError('tar: member with an empty name');
    if (files.has(path)) throw new BundleFormatError(`tar: duplicate member ${path}`);
    files.set(path, data);
  }
  if (!sawEnd) throw new BundleFormatError('tar: truncated archive (no end-of-archive marker)');
  return files;
}

/** gunzip + readTar. */
export function readBundleArchive(bytes: Uint8Array, limits?: TarLimits): Map<string, Uint8Array> {
  return readTar(gunzipBundle(bytes, limits));
}
