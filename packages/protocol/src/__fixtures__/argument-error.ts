import { expect } from 'vitest';
import { ArgumentError } from '../errors';

/** Runs a parse that must fail and returns the `field` its ArgumentError names. */
export function fieldOfError(parse: () => unknown): string | undefined {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(ArgumentError);
    return (error as ArgumentError).field;
  }
  throw new Error('expected an ArgumentError');
}
