"""Where the new instance goes: laid out like the old one."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.discover import plan_new


def debian(data_dir):
    return dict(major="15", data_dir=data_dir, service=dict(kind="debian", version="15", cluster="main"))


def test_a_debian_cluster_goes_where_postgresql_common_puts_it():
    planned = plan_new(debian("/var/lib/postgresql/15/main"), "18")
    assert planned["data_dir"] == "/var/lib/postgresql/18/main"
    assert planned["config_file"] == "/etc/postgresql/18/main/postgresql.conf"
    assert planned["service"]["unit"] == "postgresql@18-main.service"


def test_a_debian_cluster_moved_by_its_dba_gets_its_successor_beside_it():
    assert plan_new(debian("/srv/pgdata/15/main"), "18")["data_dir"] == "/srv/pgdata/18/main"
    assert plan_new(debian("/data/pg/main"), "18")["data_dir"] == "/var/lib/postgresql/18/main"


def test_a_version_inside_another_number_is_not_the_old_major():
    assert plan_new(debian("/srv/disk115/main"), "18")["data_dir"] == "/var/lib/postgresql/18/main"
