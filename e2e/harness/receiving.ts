// Requests a test server is still receiving: a test that judges what reached a backend waits
// until none is, so that a request still arriving is not counted with the next case.
import type { IncomingMessage } from 'node:http';

export class ReceivingCount {
  #n = 0;

  /** Requests whose head arrived but whose body has not ended (nor the request closed). */
  get value(): number {
    return this.#n;
  }

  /** Counts `req` from now until its body ends or it closes, whichever comes first. */
  track(req: IncomingMessage): void {
    this.#n++;
    let done = false;
    const end = (): void => {
      if (done) return;
      done = true;
      this.#n--;
    };
    req.on('end', end);
    req.on('close', end);
  }
}
