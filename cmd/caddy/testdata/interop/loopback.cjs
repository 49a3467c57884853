// Preloaded with `node --require ./loopback.cjs` into the servers the interop
// suite runs, some of which listen on every interface: every TCP server
// listens on 127.0.0.1 instead, on the port it asked for (PORT=0 takes a
// free one). When INTEROP_LISTEN_FD names an open file descriptor, the
// address each server listens on is written to it as a line
// ("127.0.0.1:PORT"), so that the test learns the port and that the server
// is ready, without polling.
"use strict";
const fs = require("node:fs");
const net = require("node:net");

const announceFD = process.env.INTEROP_LISTEN_FD ? Number(process.env.INTEROP_LISTEN_FD) : undefined;
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const callback = typeof args[args.length - 1] === "function" ? args.pop() : undefined;
  const first = args[0];
  const options = first !== null && typeof first === "object" ? { ...first } : { port: first };
  if (options.path === undefined) {
    options.host = "127.0.0.1";
    if (announceFD !== undefined) {
      this.once("listening", () => {
        const { address, port } = this.address();
        fs.writeSync(announceFD, `${address}:${port}\n`);
      });
    }
  }
  return callback ? listen.call(this, options, callback) : listen.call(this, options);
};
