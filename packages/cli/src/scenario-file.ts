/**
 * Scenario files: YAML parsed with line positions, validated by backend-sim's zod schema, each
 * problem reported at the line and column of the value (or key) it is about.
 */
import { validateScenario, type Scenario } from '@ioas/backend-sim';
import { isMap, isSeq, LineCounter, parseDocument, type Node } from 'yaml';

/** One problem, with where it is: `file:line:column: path: message`. */
export interface ScenarioProblem {
  /** 1-based line. */
  readonly line: number;
  /** 1-based column. */
  readonly column: number;
  /** The key path in the scenario (`steps.1.map.size`), empty for YAML syntax errors. */
  readonly path: string;
  /** What is wrong. */
  readonly message: string;
}

/** Turns bigints that fit in a double back into numbers, so that counts validate as numbers. */
function normalise(value: unknown): unknown {
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (Array.isArray(value)) return value.map(normalise);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, normalise(item)]));
  return value;
}

/** The deepest node along `path` (a missing key is reported where its parent is). */
function nodeAt(root: Node | null, path: readonly (string | number)[]): Node | null {
  let node = root;
  for (const key of path) {
    let next: unknown;
    if (isMap(node)) next = node.get(key, true);
    else if (isSeq(node) && typeof key === 'number') next = node.get(key, true);
    if (next === undefined || next === null || typeof next !== 'object') break;
    node = next as Node;
  }
  return node;
}

/** The result of {@link loadScenario}: the scenario, or every problem in the file. */
export type LoadedScenario =
  | {
      /** Valid. */
      ok: true;
      /** The validated scenario. */
      scenario: Scenario;
    }
  | {
      /** Not valid. */
      ok: false;
      /** Every problem, in file order. */
      problems: ScenarioProblem[];
    };

/** Parses and validates a scenario file's text. */
export function loadScenario(text: string): LoadedScenario {
  const lineCounter = new LineCounter();
  // Integers as bigints first: a 64-bit address written in hex must not lose its low bits.
  let document: ReturnType<typeof parseDocument>;
  try {
    document = parseDocument(text, { lineCounter, intAsBigInt: true, prettyErrors: false });
  } catch (error) {
    // The parser recurses per nesting level: ten thousand `[` overflow its stack.
    return { ok: false, problems: [{ line: 1, column: 1, path: '', message: error instanceof RangeError ? 'nested too deeply' : (error as Error).message }] };
  }
  const position = (offset: number) => lineCounter.linePos(offset);
  if (document.errors.length > 0) {
    return {
      ok: false,
      problems: document.errors.map((error) => {
        const { line, col } = position(error.pos[0]);
        const message = error.message.split('\n')[0]!;
        return { line, column: col, path: '', message: /call stack/i.test(message) ? 'nested too deeply' : message };
      }),
    };
  }
  let value: unknown;
  try {
    // toJS refuses an alias bomb (a billion laughs: aliases of aliases, exponentially many nodes)
    // with a ReferenceError; deep nesting may overflow the stack. Either way the file is invalid.
    value = normalise(document.toJS({ maxAliasCount: 100 }));
  } catch (error) {
    const message = error instanceof RangeError ? 'nested too deeply' : /alias/i.test((error as Error).message) ? 'too many aliases (an alias bomb?): the document expands to too many nodes' : (error as Error).message;
    return { ok: false, problems: [{ line: 1, column: 1, path: '', message }] };
  }
  let result: ReturnType<typeof validateScenario>;
  try {
    result = validateScenario(value);
  } catch (error) {
    return { ok: false, problems: [{ line: 1, column: 1, path: '', message: error instanceof RangeError ? 'nested too deeply' : (error as Error).message }] };
  }
  if (result.ok) return result;
  return {
    ok: false,
    problems: result.issues.map((issue) => {
      const node = nodeAt(document.contents, issue.path);
      const { line, col } = position(node?.range?.[0] ?? 0);
      return { line, column: col, path: issue.path.join('.'), message: issue.message };
    }),
  };
}
