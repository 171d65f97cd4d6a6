import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { timeoutSignal } from '../../../src/infra/timeout-signal.js';

describe('timeoutSignal', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('aborts with a TimeoutError once the time has passed, not before', () => {
    const { signal } = timeoutSignal(1000);
    vi.advanceTimersByTime(999);
    expect(signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as DOMException).name).toBe('TimeoutError');
  });

  it('clear drops the timer: nothing is left pending and the signal never aborts', () => {
    const timeout = timeoutSignal(1000);
    expect(vi.getTimerCount()).toBe(1);
    timeout.clear();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(timeout.signal.aborted).toBe(false);
  });
});
