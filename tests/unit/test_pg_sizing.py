"""The logical copy's workers sized to the host, within what the old server has free."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.postgres.sizing import copy_parallelism

GB = 2 ** 30


def test_a_small_host_keeps_postgresqls_defaults():
    sized = copy_parallelism(2, 4 * GB, 1, free_slots=10, free_senders=10)
    assert sized["sync_workers_per_subscription"] == 2 and sized["restore_jobs"] == 2
    assert sized["settings"]["max_worker_processes"] >= 8


def test_half_the_cores_go_to_the_copy_at_most_eight_syncs():
    assert copy_parallelism(16, 64 * GB, 1, 20, 20)["sync_workers_per_subscription"] == 8
    assert copy_parallelism(8, 64 * GB, 1, 20, 20)["sync_workers_per_subscription"] == 4
    assert copy_parallelism(64, 64 * GB, 1, 40, 40)["sync_workers_per_subscription"] == 8


def test_the_old_servers_free_slots_and_senders_bound_the_syncs():
    sized = copy_parallelism(16, 64 * GB, 2, free_slots=7, free_senders=20)
    assert sized["sync_workers_per_subscription"] == 2  # (7 - 2 subscriptions) // 2 databases
    assert "old server" in sized["limited_by"]
    assert copy_parallelism(16, 64 * GB, 3, free_slots=3, free_senders=3)["sync_workers_per_subscription"] == 1


def test_workers_cover_every_subscription_and_never_drop_below_the_old_servers():
    sized = copy_parallelism(16, 64 * GB, 3, 40, 40)
    per_db = 1 + sized["sync_workers_per_subscription"] + sized["parallel_apply_workers_per_subscription"]
    assert sized["settings"]["max_logical_replication_workers"] == 3 * per_db
    assert sized["settings"]["max_worker_processes"] > sized["settings"]["max_logical_replication_workers"]
    kept = copy_parallelism(2, 4 * GB, 1, 10, 10, old_settings=dict(max_worker_processes="64"))
    assert kept["settings"]["max_worker_processes"] == 64


def test_index_builds_share_a_quarter_of_the_memory_within_bounds():
    assert copy_parallelism(8, 16 * GB, 1, 10, 10)["maintenance_work_mem_mb"] == 1024  # 4 GB / 4 jobs
    assert copy_parallelism(2, 1 * GB, 1, 10, 10)["maintenance_work_mem_mb"] == 128  # 256 MB / 2 jobs
    assert copy_parallelism(2, 0, 1, 10, 10)["maintenance_work_mem_mb"] == 64
    assert copy_parallelism(4, 256 * GB, 1, 10, 10)["maintenance_work_mem_mb"] == 2048


def test_parallel_apply_only_where_the_release_has_it():
    assert "max_parallel_apply_workers_per_subscription" not in copy_parallelism(8, GB, 1, 10, 10, new_major=15)[
        "settings"]
