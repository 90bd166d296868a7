# Python's networking on the loopback (tests/sandbox-net.sh runs it natively
# and in a sandbox and compares): an asyncio echo server and client, and
# http.server in a thread fetched with urllib. Prints no port.
import asyncio
import http.server
import socket
import threading
import urllib.request


async def echo_main():
    async def handle(reader, writer):
        while data := await reader.read(100):
            writer.write(data.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("localhost", port)
        for word in ("hello", "asyncio", "echo"):
            writer.write(word.encode())
            await writer.drain()
            print("asyncio echo:", (await reader.readexactly(len(word))).decode())
        writer.close()
        await writer.wait_closed()
    # UDP through the event loop
    loop = asyncio.get_running_loop()
    got = loop.create_future()

    class Srv(asyncio.DatagramProtocol):
        def connection_made(self, t):
            self.t = t

        def datagram_received(self, data, addr):
            self.t.sendto(data[::-1], addr)

    class Cli(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.set_result((data, addr[0]))

    st, _ = await loop.create_datagram_endpoint(Srv, local_addr=("127.0.0.1", 0))
    ct, _ = await loop.create_datagram_endpoint(Cli, remote_addr=st.get_extra_info("sockname"))
    ct.sendto(b"datagram")
    data, host = await asyncio.wait_for(got, 10)
    print("asyncio udp:", data.decode(), "from", host)
    ct.close()
    st.close()


asyncio.run(echo_main())


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("you asked for %s" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
port = httpd.server_address[1]
t = threading.Thread(target=httpd.serve_forever, daemon=True)
t.start()
for path in ("/", "/a/b?c=d"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30) as r:
        print("urllib:", r.status, r.headers["Content-Type"], r.read().decode())
httpd.shutdown()
httpd.server_close()
s = socket.socket()
try:
    s.connect(("127.0.0.1", port))
    print("after server_close: connected")
except ConnectionRefusedError:
    print("after server_close: refused")
print("getaddrinfo localhost:", sorted({ai[4][0] for ai in socket.getaddrinfo("localhost", 80, socket.AF_INET)}))
