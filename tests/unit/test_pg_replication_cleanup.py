"""What finalize removes of the replication set-up: exactly the pg_hba.conf lines and passfile lines it wrote."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres import replication_access as r


def test_hba_lines_removed_exactly_and_the_block_with_them():
    original = "local all all peer\n# rep is mentioned here\nhost all rep 10.0.0.0/8 scram-sha-256\n"
    both = r.with_hba_lines(r.with_hba_lines(original, "rep", "app"), "rep", "shop")
    other = r.with_hba_lines(both, "someone", "app")
    assert r.without_hba_lines(both, "rep") == original
    assert r.without_hba_lines(other, "rep") == r.with_hba_lines(original, "someone", "app")
    assert r.without_hba_lines(original, "rep") == original
    assert r.without_hba_lines(r.with_hba_lines("", "rep", "app"), "rep") == ""


def test_the_physical_copy_line_goes_with_the_others():
    original = "local all all peer\n"
    physical = r.with_hba_lines(original, "rep", "app", physical=True)
    assert 'local   replication   "rep"   scram-sha-256' in physical.split(r.HBA_END)[0]
    assert r.with_hba_lines(physical, "rep", "app", physical=True) == physical
    assert r.without_hba_lines(physical, "rep") == original


def test_passfile_lines_removed_for_the_user_only():
    text = r.with_passfile_line(r.with_passfile_line("*:6432:*:v:x\n", 5432, "u:1", "p"), 5433, "u:1", "q")
    assert r.without_passfile_lines(text, "u:1") == "*:6432:*:v:x\n"
    assert r.without_passfile_lines(r.with_passfile_line("", 5432, "u", "p"), "u") == ""
    assert r.without_passfile_lines("*:5432:*:uu:p\n", "u") == "*:5432:*:uu:p\n"
