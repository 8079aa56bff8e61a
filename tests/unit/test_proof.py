"""The proof's arithmetic: lost, duplicated and reordered writes, gaps and tps from writer logs."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("fleetdb_proof", os.path.join(ROOT, "tools", "fleetdb_proof.py"))
proof = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(proof)


def writer(acked, attempts=None, failures=0):
    return dict(acked=acked, attempts=attempts or len(acked), failures=failures, start=None, stop=None)


def test_every_acknowledged_write_found_once_is_ok():
    writers = {1: writer([(1, 10.0), (2, 10.1), (3, 10.5)], attempts=5, failures=2)}
    report = proof.analyse(writers, [(1, 1, 100), (1, 2, 101), (1, 3, 205)], {1: 3})
    assert report["ok"] and report["lost"] == 0 and report["failed_attempts"] == 2
    assert report["longest_gap_s"] == 0.4 and report["longest_gap_writer"] == 1
    assert report["tps"] == round(3 / 0.5, 1)


def test_a_missing_acknowledged_write_is_lost():
    report = proof.analyse({1: writer([(1, 1.0), (2, 2.0)])}, [(1, 1, 5)], {1: 2})
    assert not report["ok"] and report["lost"] == 1 and report["lost_examples"] == [[1, 2]]


def test_an_unacknowledged_write_on_the_server_is_not_a_loss():
    report = proof.analyse({1: writer([(1, 1.0)])}, [(1, 1, 5), (1, 2, 6)], {1: 2})
    assert report["ok"]


def test_ids_going_backwards_mean_the_sequence_did_not_continue():
    report = proof.analyse({1: writer([(1, 1.0), (2, 2.0)])}, [(1, 1, 500), (1, 2, 3)], {1: 2})
    assert not report["ok"] and report["out_of_order_ids"] == 1


def test_last_seq_behind_the_log_means_an_update_was_lost():
    report = proof.analyse({1: writer([(1, 1.0), (2, 2.0)])}, [(1, 1, 1), (1, 2, 2)], {1: 1})
    assert not report["ok"] and report["last_seq_behind"] == 1


def test_read_logs_parses_start_stop_and_acks(tmp_path):
    (tmp_path / "writer-3.log").write_text("# start 5.0\n1 5.5\n2 6.0\n# stop 7.0 attempts=4 failures=2\n")
    logs = proof.read_logs(str(tmp_path))
    assert logs[3]["acked"] == [(1, 5.5), (2, 6.0)] and logs[3]["failures"] == 2 and logs[3]["start"] == 5.0


def test_a_read_client_s_pause_is_its_longest_time_between_two_reads():
    report = proof.analyse_reads([(10, 100.0), (12, 100.1), (12, 100.5), (15, 100.6)])
    assert report == dict(reads=4, longest_pause_s=0.4, longest_pause_at=100.1, backwards=0, ok=True)


def test_a_value_read_that_goes_backwards_is_counted_and_fails_the_reads():
    report = proof.analyse_reads([(10, 100.0), (12, 100.1), (11, 100.2)])
    assert report["backwards"] == 1 and not report["ok"]
