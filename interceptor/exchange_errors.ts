/** How a forwarding attempt ends early, shared by the HTTP/1.1 and h2c paths. */

/** A failure answered with a status of our own, before any response byte went out. */
export class ProxyFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers?: Array<[string, string]>,
  ) {
    super(message);
    this.name = "ProxyFailure";
  }
}

/** The client went away; unwinds an exchange without answering. */
export class Gone extends Error {
  constructor() {
    super("the client closed the connection");
    this.name = "Gone";
  }
}
