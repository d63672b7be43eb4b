import { queryError } from './query-error';

/** Operators and punctuation, longest first so `<=` wins over `<`. */
const symbols = ['<>', '!=', '<=', '>=', '=', '<', '>', '+', '-', '*', '/', '%', '(', ')', '[', ']', ',', '.'] as const;
/** One operator or punctuation mark. */
export type SymbolText = (typeof symbols)[number];

/** A token with its 0-based offset into the query text. */
export type Token =
  | { readonly kind: 'identifier'; readonly text: string; readonly offset: number }
  | { readonly kind: 'number'; readonly value: number; readonly text: string; readonly offset: number }
  | { readonly kind: 'string'; readonly value: string; readonly text: string; readonly offset: number }
  | { readonly kind: 'symbol'; readonly text: SymbolText; readonly offset: number }
  | { readonly kind: 'end'; readonly text: ''; readonly offset: number };

const identifierStart = /[\p{L}_$]/u;
const identifierPart = /[\p{L}\p{N}_$]/u;
const digit = /[0-9]/;
const hexDigits = /^[0-9a-fA-F]+$/;
const unicodeEscape = /^[0-9a-fA-F]{4}$/;
const simpleEscapes: Readonly<Record<string, string>> = {
  "'": "'",
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/**
 * Splits query text into tokens: identifiers (keywords are identifiers; the parser tells them apart,
 * case-insensitively), numbers (decimal with fraction/exponent, or `0x` hex), strings in `'` or `"` with
 * `\' \" \\ \/ \b \f \n \r \t \uXXXX` escapes (reference §5.3), and operators. The last token is `end`.
 *
 * @throws {ArgumentError} on a character that starts no token, an unterminated string or a bad escape or number.
 */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let index = 0;
  while (index < text.length) {
    const char = text.charAt(index);
    if (/\s/.test(char)) {
      index++;
      continue;
    }
    const start = index;
    if (identifierStart.test(char)) {
      index++;
      while (index < text.length && identifierPart.test(text.charAt(index))) index++;
      tokens.push({ kind: 'identifier', text: text.slice(start, index), offset: start });
      continue;
    }
    if (digit.test(char) || (char === '.' && digit.test(text.charAt(index + 1)))) {
      index = readNumber(text, start, tokens);
      continue;
    }
    if (char === "'" || char === '"') {
      index = readString(text, start, tokens);
      continue;
    }
    const symbol = symbols.find((candidate) => text.startsWith(candidate, index));
    if (symbol === undefined) throw queryError(text, start, `Unexpected character ${JSON.stringify(char)}`);
    tokens.push({ kind: 'symbol', text: symbol, offset: start });
    index += symbol.length;
  }
  tokens.push({ kind: 'end', text: '', offset: text.length });
  return tokens;
}

function readNumber(text: string, start: number, tokens: Token[]): number {
  let index = start;
  let value: number;
  if (/^0[xX]/.test(text.slice(start, start + 2))) {
    index += 2;
    while (index < text.length && /[0-9a-fA-F]/.test(text.charAt(index))) index++;
    const digits = text.slice(start + 2, index);
    if (!hexDigits.test(digits)) throw queryError(text, start, 'Malformed hexadecimal number');
    value = Number.parseInt(digits, 16);
  } else {
    while (index < text.length && digit.test(text.charAt(index))) index++;
    if (text.charAt(index) === '.') {
      index++;
      while (index < text.length && digit.test(text.charAt(index))) index++;
    }
    if (/[eE]/.test(text.charAt(index))) {
      const exponentStart = index;
      index++;
      if (/[+-]/.test(text.charAt(index))) index++;
      if (!digit.test(text.charAt(index))) throw queryError(text, exponentStart, 'Malformed number exponent');
      while (index < text.length && digit.test(text.charAt(index))) index++;
    }
    value = Number(text.slice(start, index));
  }
  if (index < text.length && identifierPart.test(text.charAt(index))) {
    throw queryError(text, start, `Malformed number ${JSON.stringify(text.slice(start, index + 1))}`);
  }
  if (!Number.isFinite(value)) throw queryError(text, start, 'Number out of range');
  tokens.push({ kind: 'number', value, text: text.slice(start, index), offset: start });
  return index;
}

function readString(text: string, start: number, tokens: Token[]): number {
  const quote = text.charAt(start);
  let index = start + 1;
  let value = '';
  while (true) {
    if (index >= text.length) throw queryError(text, start, 'Unterminated string literal');
    const char = text.charAt(index);
    if (char === quote) break;
    if (char !== '\\') {
      value += char;
      index++;
      continue;
    }
    const escaped = text.charAt(index + 1);
    const simple = simpleEscapes[escaped];
    if (simple !== undefined) {
      value += simple;
      index += 2;
    } else if (escaped === 'u' && unicodeEscape.test(text.slice(index + 2, index + 6))) {
      value += String.fromCharCode(Number.parseInt(text.slice(index + 2, index + 6), 16));
      index += 6;
    } else {
      throw queryError(text, index, `Invalid escape sequence ${JSON.stringify(text.slice(index, index + 2))}`);
    }
  }
  tokens.push({ kind: 'string', value, text: text.slice(start, index + 1), offset: start });
  return index + 1;
}
