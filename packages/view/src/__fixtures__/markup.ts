/**
 * A small well-formedness checker for the SVG and HTML the renderers write, so that the tests
 * need no DOM library: every tag balanced, attributes quoted, no raw `<` or stray `&` in text or
 * attribute values, one root element.
 */

const HTML_VOID = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr']);
const TAG = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"<]*")*)\s*(\/?)>/y;
const ATTRIBUTE = /([A-Za-z_:][\w:.-]*)="([^"<]*)"/g;
const AMPERSAND = /&(?!(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);)/;

/** Every problem found in `text` (empty: well-formed). `html`: allow the doctype and HTML's void elements. */
export function markupProblems(text: string, options: { html?: boolean } = {}): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  let index = 0;
  const checkText = (chunk: string, where: number): void => {
    if (AMPERSAND.test(chunk)) problems.push(`stray & at ${where}: ${JSON.stringify(chunk.slice(0, 60))}`);
  };
  while (index < text.length) {
    const open = text.indexOf('<', index);
    const chunk = text.slice(index, open < 0 ? undefined : open);
    checkText(chunk, index);
    if (stack.length === 0 && chunk.trim() !== '') problems.push(`text outside the root at ${index}: ${JSON.stringify(chunk.slice(0, 40))}`);
    if (open < 0) break;
    if (text.startsWith('<!--', open)) {
      const close = text.indexOf('-->', open);
      if (close < 0) {
        problems.push(`unclosed comment at ${open}`);
        break;
      }
      index = close + 3;
      continue;
    }
    if (options.html === true && /^<!doctype html>/i.test(text.slice(open, open + 15))) {
      index = open + 15;
      continue;
    }
    TAG.lastIndex = open;
    const match = TAG.exec(text);
    if (match === null) {
      problems.push(`malformed tag at ${open}: ${JSON.stringify(text.slice(open, open + 60))}`);
      index = open + 1;
      continue;
    }
    const [whole, closing, name, attributes, selfClosing] = match as unknown as [string, string, string, string, string];
    const seen = new Set<string>();
    for (const [, attribute, value] of attributes.matchAll(ATTRIBUTE)) {
      if (seen.has(attribute!)) problems.push(`duplicate attribute ${attribute} on <${name}> at ${open}`);
      seen.add(attribute!);
      checkText(value!, open);
    }
    if (closing === '/') {
      const top = stack.pop();
      if (top !== name) problems.push(`</${name}> at ${open} closes <${top ?? 'nothing'}>`);
    } else if (selfClosing !== '/' && !(options.html === true && HTML_VOID.has(name.toLowerCase()))) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) roots++;
    index = open + whole.length;
  }
  if (stack.length > 0) problems.push(`unclosed: ${stack.join(' > ')}`);
  if (roots !== 1) problems.push(`${roots} root elements, not 1`);
  return problems;
}

/** The elements named `name` with their attributes (as a record) and raw inner text up to the next tag. */
export function elements(text: string, name: string): { attributes: Record<string, string>; text: string }[] {
  const found: { attributes: Record<string, string>; text: string }[] = [];
  const pattern = new RegExp(`<${name}((?:\\s+[A-Za-z_:][\\w:.-]*="[^"<]*")*)\\s*/?>([^<]*)`, 'g');
  for (const match of text.matchAll(pattern)) {
    const attributes: Record<string, string> = {};
    for (const [, attribute, value] of match[1]!.matchAll(ATTRIBUTE)) attributes[attribute!] = value!;
    found.push({ attributes, text: match[2]! });
  }
  return found;
}

/** XML's five entities decoded (what a browser shows). */
export function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|quot|#39|amp);/g, (_, entity: string) => ({ lt: '<', gt: '>', quot: '"', '#39': "'", amp: '&' })[entity]!);
}
