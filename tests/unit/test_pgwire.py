"""Pure logic of the wire client: quoting, arrays, SCRAM, message parsing."""
import base64
import hashlib
import hmac
import struct

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import pgwire


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
    assert pgwire._data_row(payload) == ("abc", None)
    description = struct.pack("!h", 2) + b"a\0" + b"\0" * 18 + b"bb\0" + b"\0" * 18
    assert pgwire._row_description(description) == ["a", "bb"]


def test_error_fields_make_a_readable_message():
    payload = b"SERROR\0C42P01\0Mrelation \"x\" does not exist\0HCreate it.\0\0"
    fields = pgwire._fields(payload)
    assert fields["C"] == "42P01"
    assert fields["H"] == "Create it."


def test_result_rowcount_from_command_tag():
    result = pgwire.Result()
    result.command = "DELETE 7"
    assert result.rowcount == 7


def test_scram_exchange_matches_an_independent_server_computation():
    password, salt, iterations = "pencil", b"0123456789abcdef", 4096
    client = pgwire._Scram(password)
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
    with pytest.raises(pgwire.PgConnectError):
        client.verify("v=" + base64.b64encode(b"forged").decode())


def test_scram_rejects_a_nonce_the_server_did_not_extend():
    client = pgwire._Scram("pw")
    client.client_first()
    with pytest.raises(pgwire.PgConnectError):
        client.client_final("r=othernonce,s=%s,i=4096" % base64.b64encode(b"salt").decode())
