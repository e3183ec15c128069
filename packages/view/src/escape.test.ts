import { describe, expect, test } from 'vitest';
import { displayWidth, escapeXml, terminalSafe, truncate } from './escape.js';

describe('escaping', () => {
  test('XML: the five special characters become references', () => {
    expect(escapeXml(`<script>alert("x") & 'y'</script>`)).toBe('&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;');
    expect(escapeXml('&amp;')).toBe('&amp;amp;');
  });

  test('XML: characters XML cannot hold are dropped, tabs, newlines and astral characters kept', () => {
    expect(escapeXml('a\u0000b\u0008c\u001bd\uffffe')).toBe('abcde');
    expect(escapeXml('lone \ud800 high, lone \udc00 low')).toBe('lone  high, lone  low');
    expect(escapeXml('tab\tline\n🙂')).toBe('tab\tline\n🙂');
  });

  test('terminal: controls and bidi overrides become U+FFFD', () => {
    expect(terminalSafe('a\u001b[31mred\u0007\u202ecba\u009b')).toBe('a\ufffd[31mred\ufffd\ufffdcba\ufffd');
  });

  test('truncation counts terminal columns, never splits a surrogate pair, and ends in …', () => {
    expect(truncate('hello', 5)).toBe('hello');
    expect(truncate('hello world', 6)).toBe('hello…');
    expect(truncate('🙂🙂🙂', 5)).toBe('🙂🙂…');
    expect(displayWidth('漢字ab')).toBe(6);
    expect(truncate('漢字漢字', 5)).toBe('漢字…');
    expect(displayWidth(truncate('漢字漢字', 5))).toBeLessThanOrEqual(5);
    expect(truncate('anything', 0)).toBe('');
  });
});
