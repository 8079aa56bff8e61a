"""Forces, one by one, the interleavings of a client's large-object changes with the rounds of
upgrade/large_object_sync.py that a writer under load only meets by chance: each round is given the end position
the case needs, and the client's changes land on both sides of it, before the round's snapshot.

Run as root inside a test host, with the collection's plugins/module_utils copied to ansible_collections/ beside
this file, against two running servers that both have database DBNAME (test_data_kinds runs it on 16 and 18 after
the cutover):

    python3 large_object_rounds.py OLD_BIN_DIR OLD_DATA_DIR OLD_PORT NEW_PORT DBNAME

Prints one line per case, "CASE: equal" when the new server then holds every large object as the old one does,
else "CASE: " and what differs or the error the round raised.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.session import connect  # noqa: E402
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.upgrade.large_object_sync import (  # noqa: E402
    LargeObjectSync)

STATE = ("SELECT oid::text, md5(lo_get(oid)), pg_get_userbyid(lomowner), coalesce(lomacl::text, '-') "
         "FROM pg_largeobject_metadata ORDER BY oid")
LSN = "SELECT pg_current_wal_insert_lsn()::text"


class Server:
    def __init__(self, port, bin_dir=None, data_dir=None):
        self.port, self.bin_dir, self.data_dir = port, bin_dir, data_dir
        self.socket_dir, self.owner, self.login_user, self.login_password, self.dbname = (
            "/var/run/postgresql", "postgres", "postgres", None, None)


class Module:
    check_mode = False

    @staticmethod
    def run_command(argv, check_rc=False, environ_update=None):
        proc = subprocess.run(argv, capture_output=True, text=True, check=check_rc,
                              env=dict(os.environ, **(environ_update or {})))
        return proc.returncode, proc.stdout, proc.stderr

    @staticmethod
    def warn(message):
        print(message, file=sys.stderr)


def blob(text, size):
    return "convert_to(repeat('%s', %d), 'UTF8')" % (text, size // len(text))


def main(old_bin, old_data, old_port, new_port, dbname):
    old_spec = Server(int(old_port), old_bin, old_data)
    old, new, client = (connect(old_spec, dbname), connect(Server(int(new_port)), dbname),
                        connect(old_spec, dbname))
    sync = LargeObjectSync(Module(), old_spec, [dbname], lambda _db: old, lambda _db: new, 30)

    def run(sql):
        return client.scalar(sql)

    def check(case, end=None):
        """The round up to ``end`` (a position inside the case's changes), then one up to now."""
        try:
            if end:
                sync.round(end)
            sync.round()
        except Exception as exc:   # pylint: disable=broad-except   # the case's result, printed
            print("%s: %s" % (case, exc))
            return
        on_old, on_new = old.query(STATE).rows, new.query(STATE).rows
        print("%s: %s" % (case, "equal" if on_old == on_new else "old %s, new %s" % (on_old, on_new)))

    for oid in (7100, 7101, 7102, 7103):
        run("SELECT lo_from_bytea(%d, %s)" % (oid, blob("x1", 20000)))
    sync.full()
    check("copied whole")

    # The end falls between the create and the first write of one transaction: the metadata page is named, the
    # data page is not, and the snapshot has the object with its data (the CI failure: 'large object 900010 does
    # not exist', the new server told to re-own an object no round had created there).
    run("BEGIN")
    run("SELECT lo_create(7200)")
    end = run(LSN)
    run("SELECT lo_put(7200, 0, %s)" % blob("ab", 5000))
    run("COMMIT")
    check("created before the end, written after it", end)

    # Another object's re-owning names the metadata page; then, after the end, 7100 is unlinked and created again
    # smaller: the snapshot has another object under the same oid.
    run("ALTER LARGE OBJECT 7102 OWNER TO lo_rounds_owner")
    end = run(LSN)
    run("SELECT lo_unlink(7100)")
    run("SELECT lo_from_bytea(7100, %s)" % blob("cd", 3000))
    check("unlinked and created again after the end", end)

    # Re-owned after the end while the round names its page: copied with its owner, before its own WAL is read.
    run("SELECT lo_put(7103, 100, %s)" % blob("ef", 10))
    end = run(LSN)
    run("ALTER LARGE OBJECT 7103 OWNER TO lo_rounds_owner")
    run("GRANT SELECT ON LARGE OBJECT 7103 TO lo_rounds_owner")
    check("re-owned and granted after the end", end)

    # Created and unlinked after the end, its page named by the round: nothing to do on either server.
    run("SELECT lo_put(7101, 0, %s)" % blob("gh", 10))
    end = run(LSN)
    run("SELECT lo_from_bytea(7201, %s)" % blob("ij", 100))
    run("SELECT lo_unlink(7201)")
    run("SELECT lo_unlink(7101)")
    check("created and unlinked, and unlinked, after the end", end)

    # The new server lacks an object a round names, unchanged since it was copied (a round that failed after an
    # unlink, say): the snapshot says it exists, so it is copied whole.
    new.query("SELECT lo_unlink(7102)")
    run("ALTER LARGE OBJECT 7103 OWNER TO postgres")
    check("missing on the new server")

    # The WAL a round reads goes on into the next segment file.
    run("SELECT lo_put(7103, 0, %s)" % blob("mn", 10))
    run("SELECT pg_switch_wal()")
    run("SELECT lo_put(7200, 0, %s)" % blob("op", 10))
    check("WAL past the end of a segment")

    sync.drop_slot(old)


if __name__ == "__main__":
    main(*sys.argv[1:])
