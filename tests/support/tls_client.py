"""A TLS echo client that is not ours: Python's ssl module (OpenSSL).

    python3 tls_client.py HOST PORT CAFILE NAME BYTES (close_notify|fin)

Sends BYTES of a known pattern over TLS (verifying the server's certificate
against CAFILE for NAME), reading the echo as it comes, then ends its side:
`close_notify` (ssl's unwrap) or a bare FIN with no close_notify. Reads on
until the server's own close_notify and FIN. Prints one line,
`echoed N bytes exactly; server close_notify: yes|no; VERSION`, and exits 0
only when every byte came back in order. Non-blocking, over a MemoryBIO, so
the echo is read while sending: a server with back-pressure never deadlocks
it.
"""

import select
import socket
import ssl
import sys


def main():
    host, port, cafile, name, total, ending = sys.argv[1:7]
    total = int(total)
    data = bytes((i * 7 + i // 251) % 256 for i in range(total))
    ctx = ssl.create_default_context(cafile=cafile)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    sock = socket.create_connection((host, int(port)))
    sock.setblocking(False)
    sent, got, ended, eof, close_notify = 0, bytearray(), False, False, False
    handshaken = False
    wire_out = b""
    while not eof:
        if not handshaken:
            try:
                tls.do_handshake()
                handshaken = True
            except ssl.SSLWantReadError:
                pass
        elif sent < total:
            try:
                sent += tls.write(data[sent:sent + 16384])
            except ssl.SSLWantReadError:
                pass
        elif not ended:
            ended = True
            if ending == "close_notify":
                try:
                    tls.unwrap()  # queues close_notify; then wants the peer's
                except ssl.SSLWantReadError:
                    pass
        wire_out += outgoing.read()
        if ended and ending == "fin" and not wire_out:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            ending = "fin sent"
        want_write = bool(wire_out) or (handshaken and sent < total)
        readable, writable, _ = select.select(
            [sock], [sock] if want_write else [], [], 20)
        if not readable and not writable:
            print("timed out: sent %d, got %d" % (sent, len(got)))
            return 1
        if writable and wire_out:
            try:
                n = sock.send(wire_out)
                wire_out = wire_out[n:]
            except BlockingIOError:
                pass
        if readable:
            chunk = sock.recv(65536)
            if chunk:
                incoming.write(chunk)
            else:
                incoming.write_eof()
                eof = True
        while True:
            try:
                piece = tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except ssl.SSLZeroReturnError:
                close_notify = True
                break
            except ssl.SSLEOFError:
                break
            if not piece:
                close_notify = True
                break
            got += piece
    ok = bytes(got) == data
    print("echoed %d bytes %s; server close_notify: %s; %s" % (
        len(got), "exactly" if ok else "WRONG", "yes" if close_notify else "no",
        tls.version()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
