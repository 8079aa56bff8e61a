"""Pure logic of the wire client: quoting, arrays, SCRAM, message parsing; and the protocol against a scripted
server on a local socket (TLS negotiation, COPY refused, a timeout cancelled)."""
import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire, scram, wire_messages, wire_tls


@pytest.mark.parametrize("name, quoted", [
    ("plain", '"plain"'),
    ('we"ird', '"we""ird"'),
    ("Mixed Case", '"Mixed Case"'),
])
def test_quote_ident(name, quoted):
    assert pgwire.quote_ident(name) == quoted


@pytest.mark.parametrize("value, literal", [
    (None, "NULL"),
    ("it's", "'it''s'"),
    ("back\\slash", "E'back\\\\slash'"),
    (5, "'5'"),
])
def test_quote_literal(value, literal):
    assert pgwire.quote_literal(value) == literal


def test_array_literal_escapes_quotes_backslashes_and_nulls():
    assert pgwire.array_literal(['a"b', "c\\d", None, 1, True]) == '{"a\\"b","c\\\\d",NULL,"1","true"}'
    assert pgwire.array_literal([]) == "{}"


def test_data_row_and_row_description():
    payload = struct.pack("!h", 2) + struct.pack("!i", 3) + b"abc" + struct.pack("!i", -1)
    assert wire_messages.data_row(payload) == ("abc", None)
    description = struct.pack("!h", 2) + b"a\0" + b"\0" * 18 + b"bb\0" + b"\0" * 18
    assert wire_messages.row_description(description) == ["a", "bb"]


def test_error_fields_make_a_readable_message():
    payload = b"SERROR\0C42P01\0Mrelation \"x\" does not exist\0HCreate it.\0\0"
    fields = wire_messages.fields(payload)
    assert fields["C"] == "42P01"
    assert fields["H"] == "Create it."


def test_result_rowcount_from_command_tag():
    result = pgwire.Result()
    result.command = "DELETE 7"
    assert result.rowcount == 7


def test_scram_exchange_matches_an_independent_server_computation():
    password, salt, iterations = "pencil", b"0123456789abcdef", 4096
    client = scram.ScramSha256(password)
    client_first = client.client_first()
    server_nonce = client.nonce + "server"
    server_first = "r=%s,s=%s,i=%d" % (server_nonce, base64.b64encode(salt).decode(), iterations)
    final = client.client_final(server_first)

    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = final.rsplit(",p=", 1)[0]
    auth_message = ",".join([client_first[3:], server_first, without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = base64.b64decode(final.rsplit(",p=", 1)[1])
    recovered_key = bytes(a ^ b for a, b in zip(proof, signature))
    assert hashlib.sha256(recovered_key).digest() == stored_key

    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    verifier = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
    client.verify("v=" + verifier)
    with pytest.raises(scram.ScramError):
        client.verify("v=" + base64.b64encode(b"forged").decode())


def test_scram_rejects_a_nonce_the_server_did_not_extend():
    client = scram.ScramSha256("pw")
    client.client_first()
    with pytest.raises(scram.ScramError):
        client.client_final("r=othernonce,s=%s,i=4096" % base64.b64encode(b"salt").decode())


def test_scram_refuses_an_iteration_count_past_the_cap_before_computing_anything():
    client = scram.ScramSha256("pw")
    client.client_first()
    salt = base64.b64encode(b"salt").decode()
    with pytest.raises(scram.ScramError, match="2147483647 iterations"):
        client.client_final("r=%sx,s=%s,i=2147483647" % (client.nonce, salt))
    with pytest.raises(scram.ScramError, match="0 iterations"):
        client.client_final("r=%sx,s=%s,i=0" % (client.nonce, salt))
    with pytest.raises(scram.ScramError, match="salt or iteration count"):
        client.client_final("r=%sx,i=4096" % client.nonce)
    assert client.client_final("r=%sx,s=%s,i=%d" % (client.nonce, salt, scram.MAX_ITERATIONS))


def test_scram_reports_the_servers_error_attribute():
    client = scram.ScramSha256("pw")
    with pytest.raises(scram.ScramError, match="invalid-proof"):
        client.verify("e=invalid-proof")
    assert not client.verified


# -- the protocol against a scripted server ----------------------------------------------------------------------

def _message(kind, payload=b""):
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _read(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _read_message(sock):
    header = _read(sock, 5)
    return header[:1], _read(sock, struct.unpack("!i", header[1:])[0] - 4)


READY = _message(b"Z", b"I")
PID, KEY = 4242, 171717


def _startup(sock, answer_ssl=b"N"):
    """Reads the startup (answering an SSLRequest with ``answer_ssl``), logs the client in; the startup packet."""
    length, code = struct.unpack("!ii", _read(sock, 8))
    if code == wire_tls.SSL_REQUEST_CODE:
        sock.sendall(answer_ssl)
        if answer_ssl != b"N":
            return None
        length, code = struct.unpack("!ii", _read(sock, 8))
    packet = _read(sock, length - 8)
    sock.sendall(_message(b"R", struct.pack("!i", 0)) + _message(b"K", struct.pack("!ii", PID, KEY)) + READY)
    return code, packet


class ScriptedServer:
    """Listens on 127.0.0.1 (or a Unix socket in ``directory``); each connection runs the next of ``scripts``
    (a function of the socket) in a thread of its own; ``join`` returns what they returned, in that order."""

    def __init__(self, scripts, directory=None):
        if directory:
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.port = 5432
            self.listener.bind(os.path.join(directory, ".s.PGSQL.5432"))
            self.host = directory
        else:
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.host, self.port = self.listener.getsockname()
        self.listener.listen(4)
        self.seen = [None] * len(scripts)
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, args=(list(scripts),), daemon=True)
        self.acceptor.start()

    def _accept(self, scripts):
        for index, script in enumerate(scripts):
            sock, _address = self.listener.accept()
            thread = threading.Thread(target=self._run, args=(index, script, sock), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, index, script, sock):
        try:
            self.seen[index] = script(sock)
        except EOFError:
            self.seen[index] = "EOF"
        finally:
            sock.close()

    def join(self):
        self.acceptor.join(timeout=10)
        for thread in self.threads:
            thread.join(timeout=10)
        self.listener.close()
        return self.seen


def _connect(server, **kwargs):
    return pgwire.Connection(host=server.host, port=server.port, user="u", dbname="d", connect_timeout=5, **kwargs)


def test_prefer_goes_on_in_plain_text_when_the_server_answers_n():
    server = ScriptedServer([_startup])
    conn = _connect(server, sslmode="prefer")
    conn.close()
    code, packet = server.join()[0]
    assert code == wire_messages.PROTOCOL_VERSION and b"user\0u\0" in packet


def test_require_and_verify_full_refuse_a_server_without_tls():
    for sslmode in ("require", "verify-full"):
        server = ScriptedServer([_startup])
        with pytest.raises(pgwire.PgConnectError, match="does not accept TLS"):
            _connect(server, sslmode=sslmode)
        server.join()


def test_disable_sends_no_ssl_request():
    server = ScriptedServer([_startup])
    _connect(server, sslmode="disable").close()
    assert server.join()[0][0] == wire_messages.PROTOCOL_VERSION


def test_a_unix_socket_never_asks_for_tls(tmp_path):
    server = ScriptedServer([_startup], directory=str(tmp_path))
    _connect(server, sslmode="verify-full").close()
    assert server.join()[0][0] == wire_messages.PROTOCOL_VERSION


def test_an_answer_that_is_neither_s_nor_n_is_refused():
    server = ScriptedServer([lambda sock: _startup(sock, answer_ssl=b"E")])
    with pytest.raises(pgwire.PgConnectError, match="answered the TLS request"):
        _connect(server)
    server.join()


def test_authentication_ok_before_the_server_proves_its_scram_signature_is_refused():
    def script(sock):
        _read(sock, 8)
        sock.sendall(b"N")
        length = struct.unpack("!i", _read(sock, 4))[0]
        _read(sock, length - 4)
        sock.sendall(_message(b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\0\0"))
        _read_message(sock)  # SASLInitialResponse
        sock.sendall(_message(b"R", struct.pack("!i", 0)))
        return "done"
    server = ScriptedServer([script])
    with pytest.raises(pgwire.PgConnectError, match="without proving"):
        _connect(server, password="pw")
    server.join()


def _answer_then_select(first_answer):
    """A session whose first query gets ``first_answer`` (a function of the socket), the second 'SELECT 1'."""
    def script(sock):
        _startup(sock)
        received = [_read_message(sock)]
        received += first_answer(sock)
        received.append(_read_message(sock))
        while received[-1][0] not in (b"Q", b"S"):
            received.append(_read_message(sock))
        sock.sendall(_message(b"T", struct.pack("!h", 1) + b"one\0" + b"\0" * 18)
                     + _message(b"D", struct.pack("!hi", 1, 1) + b"1") + _message(b"C", b"SELECT 1\0") + READY)
        return [kind for kind, _payload in received]
    return script


def test_copy_to_stdout_raises_a_clear_error_and_the_session_stays_usable():
    def copy_out(sock):
        sock.sendall(_message(b"H", b"\0\0\0") + _message(b"d", b"1\n") + _message(b"d", b"2\n") + _message(b"c")
                     + _message(b"C", b"COPY 2\0") + READY)
        return []
    server = ScriptedServer([_answer_then_select(copy_out)])
    conn = _connect(server)
    with pytest.raises(pgwire.PgError, match="COPY TO STDOUT is not supported by this client") as raised:
        conn.execute("COPY t TO STDOUT")
    assert raised.value.sqlstate == "0A000"
    assert conn.execute("SELECT 1").rows == [("1",)]
    conn.close()
    assert server.join()[0] == [b"Q", b"Q"]


@pytest.mark.parametrize("extended", [False, True])
def test_copy_from_stdin_is_ended_with_copy_fail_and_the_session_stays_usable(extended):
    def copy_in(sock):
        received = [_read_message(sock) for _index in range(4)] if extended else []  # Bind ... Sync
        sock.sendall(_message(b"G", b"\0\0\0"))
        received.append(_read_message(sock))
        if extended:
            received.append(_read_message(sock))
        sock.sendall(_message(b"E", b"SERROR\0C57014\0MCOPY from stdin failed\0\0") + READY)
        return received
    server = ScriptedServer([_answer_then_select(copy_in)])
    conn = _connect(server)
    with pytest.raises(pgwire.PgError, match="COPY FROM STDIN is not supported by this client"):
        if extended:
            conn.query("COPY t FROM STDIN")
        else:
            conn.execute("COPY t FROM STDIN")
    assert conn.scalar("SELECT 1") == "1"
    conn.close()
    kinds = server.join()[0]
    extended_query = [b"P", b"B", b"D", b"E", b"S"]
    assert kinds == (extended_query + [b"f", b"S"] if extended else [b"Q", b"f"]) + extended_query


def test_a_replication_stream_is_refused_and_the_session_closed():
    def copy_both(sock):
        _startup(sock)
        _read_message(sock)
        sock.sendall(_message(b"W", b"\0\0\0"))
        return _read_message(sock)[0]
    server = ScriptedServer([copy_both])
    conn = _connect(server)
    with pytest.raises(pgwire.PgError, match="replication stream"):
        conn.execute("START_REPLICATION SLOT s LOGICAL 0/0")
    assert conn.closed
    assert server.join() == [b"X"]


def test_a_statement_past_io_timeout_is_cancelled_on_a_connection_of_its_own_then_the_session_closed():
    def silent(sock):
        _startup(sock)
        _read_message(sock)
        return sock.recv(1) or "closed"

    def cancel(sock):
        return struct.unpack("!iiii", _read(sock, 16))

    server = ScriptedServer([silent, cancel])
    conn = _connect(server, io_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(pgwire.PgError, match=r"timed out: .* within io_timeout 0.3 s; the statement was cancelled "
                                             r"and the session closed") as raised:
        conn.execute("SELECT pg_sleep(30)")
    assert time.monotonic() - started < 2
    assert raised.value.sqlstate == "57014" and conn.closed
    assert server.join() == ["closed", (16, wire_tls.CANCEL_REQUEST_CODE, PID, KEY)]


def test_tls_context_per_sslmode():
    assert wire_tls.tls_context("prefer").verify_mode == ssl.CERT_NONE
    assert wire_tls.tls_context("require").verify_mode == ssl.CERT_NONE
    full = wire_tls.tls_context("verify-full")
    assert full.verify_mode == ssl.CERT_REQUIRED and full.check_hostname
    assert full.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ValueError, match="sslmode 'allow'"):
        wire_tls.open_socket("127.0.0.1", 1, 1, sslmode="allow")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost (no SAN: the host name is checked against its CN), and its key."""
    where = tmp_path_factory.mktemp("tls")
    key, crt = str(where / "server.key"), str(where / "server.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    return crt, key


def _tls_startup(certificate):
    def script(sock):
        assert struct.unpack("!ii", _read(sock, 8))[1] == wire_tls.SSL_REQUEST_CODE
        sock.sendall(b"S")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        try:
            tls = context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return "handshake refused"
        _startup(tls)
        return tls.version()
    return script


def test_tls_is_used_when_the_server_answers_s_and_verify_full_checks_ca_and_host_name(certificate):
    crt = certificate[0]
    cases = [("prefer", "127.0.0.1", None), ("require", "127.0.0.1", None), ("require", "127.0.0.1", crt),
             ("verify-full", "localhost", crt)]
    for sslmode, host, rootcert in cases:
        server = ScriptedServer([_tls_startup(certificate)])
        pgwire.Connection(host=host, port=server.port, user="u", sslmode=sslmode, sslrootcert=rootcert).close()
        assert server.join()[0] in ("TLSv1.2", "TLSv1.3"), sslmode
    for host, rootcert, reason in [("127.0.0.1", crt, "IP address mismatch"),
                                   ("localhost", None, "self.signed certificate")]:
        server = ScriptedServer([_tls_startup(certificate)])
        with pytest.raises(pgwire.PgConnectError, match=reason):
            pgwire.Connection(host=host, port=server.port, user="u", sslmode="verify-full", sslrootcert=rootcert)
        assert server.join() == ["handshake refused"]
