"""Installer logic: versions, checksums, ldd output, archive layout; archives of fake binaries unpacked for real."""
import hashlib
import io
import os
import tarfile

import pytest

from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.common import OperationError
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.host import LocalHost
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install import PostgresInstaller
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install_archive import parse_checksum, single_top_directory, unsafe_member
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.install_package import package_layout
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.release_binaries import (
    debian_package_for, describe_missing, loader_error_library, major_of, missing_libraries, requested_release,
    version_string)

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd3b5f2000)
\tlibzstd.so.1 => not found
\tliblz4.so.1 => /lib/x86_64-linux-gnu/liblz4.so.1 (0x00007f0e1c8a0000)
\tlibicui18n.so.72 => not found
\tlibzstd.so.1 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1c6bf000)
"""


def test_major_and_full_versions():
    assert major_of("16") == "16"
    assert major_of("16.15") == "16"
    assert major_of("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)") == "15"
    assert major_of("9.6.24") == "9.6"
    assert major_of("") is None
    assert requested_release("16") == ("16", None)
    assert requested_release("16.15") == ("16", "16.15")
    assert requested_release(16) == ("16", None)
    assert version_string("postgres (PostgreSQL) 16.15 (Debian 16.15-1.pgdg120+1)") == "16.15"


@pytest.mark.parametrize("bad", ["", "latest", "16.x", "v16"])
def test_a_version_that_is_none_says_how_to_write_one(bad):
    with pytest.raises(OperationError) as err:
        requested_release(bad)
    assert "quoted in YAML" in err.value.fix


def test_checksum_strings():
    digest = hashlib.sha256(b"x").hexdigest()
    assert parse_checksum("sha256:" + digest.upper()) == ("sha256", digest)
    assert parse_checksum(" SHA256:%s " % digest) == ("sha256", digest)
    with pytest.raises(OperationError, match="not of the form"):
        parse_checksum(digest)
    with pytest.raises(OperationError, match="not of the form"):
        parse_checksum("md5:" + hashlib.md5(b"x").hexdigest())
    with pytest.raises(OperationError, match="64 hexadecimal digits"):
        parse_checksum("sha256:abc")


def test_ldd_output_names_each_missing_library_once():
    assert missing_libraries(LDD_OUTPUT) == ["libzstd.so.1", "libicui18n.so.72"]
    assert missing_libraries("\tnot a dynamic executable\n") == []


def test_loader_error_names_the_library():
    err = ("/opt/pg/bin/postgres: error while loading shared libraries: libzstd.so.1: "
           "cannot open shared object file: No such file or directory")
    assert loader_error_library(err) == "libzstd.so.1"
    assert loader_error_library("") is None


@pytest.mark.parametrize("library, package", [
    ("libicuuc.so.72", "libicu72"), ("libicui18n.so.72", "libicu72"), ("libreadline.so.8", "libreadline8"),
    ("libxml2.so.2", "libxml2"), ("libzstd.so.1", "libzstd1"), ("liblz4.so.1", "liblz4-1"),
    ("libssl.so.3", "libssl3"), ("libcrypto.so.3", "libssl3"), ("libgssapi_krb5.so.2", "libgssapi-krb5-2"),
    ("libz.so.1", "zlib1g"), ("libzzz.so.9", None),
])
def test_debian_package_of_a_library(library, package):
    assert debian_package_for(library) == package


def test_missing_libraries_are_described_with_their_package():
    assert describe_missing(["libzstd.so.1", "libfoo.so.2"]) == "libzstd.so.1 (Debian package libzstd1), libfoo.so.2"


def test_archive_layout():
    assert single_top_directory(["pg/bin/postgres", "pg/lib/libpq.so", "pg/"]) == "pg"
    assert single_top_directory(["./pg/bin/postgres", "./pg/share", "./"]) == "pg"
    assert single_top_directory(["bin/postgres", "lib/libpq.so"]) is None
    assert single_top_directory([]) is None


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_unsafe_members_are_named():
    assert unsafe_member(_member("pg/bin/postgres")) is None
    assert unsafe_member(_member("pg/lib/libpq.so", tarfile.SYMTYPE, "libpq.so.5")) is None
    assert "leaves" in unsafe_member(_member("/etc/passwd"))
    assert "leaves" in unsafe_member(_member("pg/../../etc/cron.d/x"))
    assert "outside" in unsafe_member(_member("pg/lib/evil", tarfile.SYMTYPE, "/etc/shadow"))
    assert "outside" in unsafe_member(_member("pg/lib/evil", tarfile.SYMTYPE, "../../../etc"))


def test_package_layouts():
    assert package_layout("debian", "15") == ("postgresql-15", "/usr/lib/postgresql/15/bin")
    assert package_layout("redhat", "16") == ("postgresql16-server", "/usr/pgsql-16/bin")


# -- archives of fake binaries ------------------------------------------------------------------

def make_archive(path, version="16.15", top="postgresql-16.15", binaries=("postgres", "initdb", "pg_ctl")):
    with tarfile.open(path, "w:gz") as tar:
        for name in binaries:
            script = ("#!/bin/sh\necho '%s (PostgreSQL) %s'\n" % (name, version)).encode()
            info = tarfile.TarInfo("%s/bin/%s" % (top, name))
            info.size = len(script)
            info.mode = 0o755
            info.uid = 1234
            tar.addfile(info, io.BytesIO(script))
        link = tarfile.TarInfo("%s/lib/libpq.so" % top)
        link.type = tarfile.SYMTYPE
        link.linkname = "libpq.so.5"
        tar.addfile(link)
    with open(path, "rb") as handle:
        return "sha256:" + hashlib.sha256(handle.read()).hexdigest()


@pytest.fixture
def archive(tmp_path):
    path = str(tmp_path / "postgresql-16.15.tar.gz")
    return path, make_archive(path)


def test_archive_is_unpacked_into_prefix_major_without_its_top_directory(tmp_path, archive):
    path, checksum = archive
    prefix = str(tmp_path / "opt" / "postgresql")
    module = LocalHost()
    result = PostgresInstaller(module).install_archive(module, path, checksum, prefix, "16.15")
    assert result["changed"] and result["version"] == "16.15" and result["major"] == "16"
    assert result["bin_dir"] == os.path.join(prefix, "16", "bin")
    assert os.path.islink(os.path.join(prefix, "16", "lib", "libpq.so"))
    assert sorted(os.listdir(prefix)) == ["16"]
    again = PostgresInstaller(module).install_archive(module, "/nonexistent.tar.gz", None, prefix, "16")
    assert not again["changed"] and again["version"] == "16.15"


def test_a_wrong_checksum_writes_nothing(tmp_path, archive):
    path, _checksum = archive
    prefix = str(tmp_path / "opt" / "postgresql")
    module = LocalHost()
    with pytest.raises(OperationError, match="nothing was unpacked"):
        PostgresInstaller(module).install_archive(module, path, "sha256:" + "0" * 64, prefix, "16")
    assert not os.path.exists(str(tmp_path / "opt"))


def test_check_mode_verifies_and_writes_nothing(tmp_path, archive):
    path, checksum = archive
    prefix = str(tmp_path / "opt")
    module = LocalHost(check_mode=True)
    result = PostgresInstaller(module).install_archive(module, path, checksum, prefix, "16")
    assert result["changed"] and "would unpack" in result["msg"]
    assert not os.path.exists(prefix)


def test_an_archive_of_another_major_version_is_removed_again(tmp_path):
    path = str(tmp_path / "pg17.tar.gz")
    make_archive(path, version="17.2", top="postgresql-17.2")
    prefix = str(tmp_path / "opt")
    module = LocalHost()
    with pytest.raises(OperationError, match="holds PostgreSQL 17.2, not 16"):
        PostgresInstaller(module).install_archive(module, path, None, prefix, "16")
    assert not os.path.exists(prefix)


def test_an_incomplete_archive_is_refused(tmp_path):
    path = str(tmp_path / "server-only.tar.gz")
    make_archive(path, binaries=("postgres",))
    module = LocalHost()
    with pytest.raises(OperationError, match="initdb is missing"):
        PostgresInstaller(module).install_archive(module, path, None, str(tmp_path / "opt"), "16")
    assert not os.path.exists(str(tmp_path / "opt"))


def test_a_missing_archive_says_to_copy_it(tmp_path):
    module = LocalHost()
    with pytest.raises(OperationError) as err:
        PostgresInstaller(module).install_archive(module, str(tmp_path / "nope.tar.gz"), None, str(tmp_path), "16")
    assert "does not exist on the host" in err.value.msg and "copy" in err.value.fix


def test_another_minor_version_is_reported_not_replaced(tmp_path, archive):
    path, checksum = archive
    prefix = str(tmp_path / "opt")
    module = LocalHost()
    PostgresInstaller(module).install_archive(module, path, checksum, prefix, "16")
    result = PostgresInstaller(module).install_archive(module, path, checksum, prefix, "16.4")
    assert not result["changed"] and result["requested_version"] == "16.4" and result["version"] == "16.15"
    assert "16.4 was asked for, 16.15 is installed" in module.warnings[0]
