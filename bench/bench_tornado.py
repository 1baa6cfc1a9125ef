#!/usr/bin/env python3
"""vigil bench anchor: the same reply as bench_http.c from Tornado, the HTTP server Keylime's
registrar and verifier run on, so both are measured by the same wrk run on the same machine."""
import json
import sys

import tornado.ioloop
import tornado.web

BODY = json.dumps({"code": 200, "status": "Success", "results": {
    "quote": "r/1RDR4AYACIAC1d5ZmV0aW1lX3F1b3RlX3N0dWIAAAAAAAAAAAAAAAAAAAAA",
    "hash_alg": "sha256", "enc_alg": "rsa", "sign_alg": "rsassa"}})


class Quote(tornado.web.RequestHandler):
    def get(self, version):
        self.set_header("Content-Type", "application/json")
        self.write(BODY)


if __name__ == "__main__":
    app = tornado.web.Application([(r"/v([0-9.]+)/quotes/identity", Quote)])
    ssl_options = None
    if len(sys.argv) > 2:  # a `vigil ca init` directory: serve TLS with its server certificate
        import ssl
        ssl_options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_options.load_cert_chain(f"{sys.argv[2]}/server-cert.crt",
                                    f"{sys.argv[2]}/server-private.pem")
    app.listen(int(sys.argv[1]), address="127.0.0.1", ssl_options=ssl_options)
    print(f"listening on 127.0.0.1:{sys.argv[1]}", flush=True)
    tornado.ioloop.IOLoop.current().start()
