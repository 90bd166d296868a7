"""Guest of bench/net.sh: http.server in a thread on 127.0.0.1 (an
ephemeral port), fetched K times by urllib from the same process (one
connection per request, as urllib does); prints requests per second."""
import http.server, sys, threading, time, urllib.request

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass

k = int(sys.argv[1])
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d/" % srv.server_address[1]
assert urllib.request.urlopen(url).read() == b"hello\n"  # warm-up
t0 = time.perf_counter()
for _ in range(k):
    urllib.request.urlopen(url).read()
t = time.perf_counter() - t0
srv.shutdown()
print("%.1f" % (k / t))
