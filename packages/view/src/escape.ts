/**
 * Making user-controlled text (a snapshot's title, reserved-range origins) safe for where it goes:
 * XML/HTML markup and attributes, or a terminal.
 */

/**
 * Characters XML 1.0 cannot hold at all, even as character references (most C0 controls, lone
 * surrogates, U+FFFE/U+FFFF): an SVG holding one does not parse, so they are dropped, not escaped.
 */
const NOT_XML = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Escapes text for XML and HTML, in element content and in quoted attributes alike: `& < > " '`
 * become references and characters XML cannot carry are dropped.
 */
export function escapeXml(text: string): string {
  return text.replace(NOT_XML, '').replace(/[&<>"']/g, (character) => ENTITIES[character]!);
}

/**
 * Control characters (C0, DEL, C1) and bidirectional overrides, which in a terminal could move the
 * cursor, change colours or reorder what the reader sees: a title is user input.
 */
const UNSAFE_FOR_TERMINAL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Text safe to print to a terminal: every control or bidi-override character becomes `�`. */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE_FOR_TERMINAL, '\ufffd');
}

/**
 * Terminal columns a code point takes: 2 for East Asian wide and fullwidth characters and most
 * emoji, 0 for combining marks, 1 otherwise. An approximation of wcwidth, enough to keep a
 * user's title inside 80 columns.
 */
function columnsOf(point: number): number {
  if ((point >= 0x300 && point <= 0x36f) || (point >= 0x200b && point <= 0x200f) || point === 0xfe0f) return 0;
  if (
    (point >= 0x1100 && point <= 0x115f) ||
    (point >= 0x2e80 && point <= 0xa4cf && point !== 0x303f) ||
    (point >= 0xac00 && point <= 0xd7a3) ||
    (point >= 0xf900 && point <= 0xfaff) ||
    (point >= 0xfe30 && point <= 0xfe4f) ||
    (point >= 0xff00 && point <= 0xff60) ||
    (point >= 0xffe0 && point <= 0xffe6) ||
    (point >= 0x1f300 && point <= 0x1faff) ||
    (point >= 0x20000 && point <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** The terminal columns `text` takes (see {@link columnsOf}); ANSI escapes must not be in it. */
export function displayWidth(text: string): number {
  let width = 0;
  for (const point of text) width += columnsOf(point.codePointAt(0)!);
  return width;
}

/**
 * `text` cut to at most `max` terminal columns, ending in `…` when cut. Works on code points, so
 * an emoji or a CJK character is never split into a lone surrogate.
 */
export function truncate(text: string, max: number): string {
  if (max <= 0) return '';
  if (displayWidth(text) <= max) return text;
  let result = '';
  let width = 0;
  for (const point of text) {
    const columns = columnsOf(point.codePointAt(0)!);
    if (width + columns > max - 1) break;
    result += point;
    width += columns;
  }
  return `${result.trimEnd()}…`;
}
