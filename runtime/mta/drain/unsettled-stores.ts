// The drain endpoint's stores answered `unknown` (timed out, or their worker
// exited): the worker may still make them durable, or have done so, so
// `have` cannot say "not here" for their message ids. Kept by request id
// (a late answer settles its own request) and asked by message id, many at
// a time: the message-id index is built on the first ask after a change.

export class UnsettledStores {
  private readonly byRequest = new Map<number, { worker: number; ids: string[] }>();
  private index?: Set<string>;

  get(request: number): { worker: number; ids: string[] } | undefined {
    return this.byRequest.get(request);
  }

  set(request: number, worker: number, ids: string[]): void {
    this.byRequest.set(request, { worker, ids });
    this.index = undefined;
  }

  delete(request: number): void {
    this.byRequest.delete(request);
    this.index = undefined;
  }

  /** Every store of `worker` (it restarted and reported what it holds). */
  forgetWorker(worker: number): void {
    for (const [request, u] of this.byRequest) if (u.worker === worker) this.byRequest.delete(request);
    this.index = undefined;
  }

  /** Whether message `id` is in a store not settled yet. */
  has(id: string): boolean {
    this.index ??= new Set([...this.byRequest.values()].flatMap((u) => u.ids));
    return this.index.has(id);
  }
}
