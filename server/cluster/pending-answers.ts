/**
 * Questions sent over the IPC channel, each answered once by a message carrying its id: an answer that is
 * an Error rejects, and a question unanswered within its time rejects with `silence`.
 */
export function pendingAnswers() {
  const pending = new Map<number, (answer: unknown) => void>();
  let seq = 0;
  return {
    ask<T>(send: (id: number) => void, timeoutMs: number, silence: string): Promise<T> {
      const id = ++seq;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(silence));
        }, timeoutMs);
        pending.set(id, (answer) => {
          clearTimeout(timer);
          if (answer instanceof Error) reject(answer);
          else resolve(answer as T);
        });
        send(id);
      });
    },
    settle(id: number, answer: unknown) {
      const waiting = pending.get(id);
      pending.delete(id);
      waiting?.(answer);
    },
  };
}
