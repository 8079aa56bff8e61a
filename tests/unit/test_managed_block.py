"""The managed block editor: our lines between BEGIN and END markers in a file others edit."""
from ansible_collections.fleetdb.online_upgrade.plugins.module_utils.core.managed_block import ManagedBlock

BLOCK = ManagedBlock("# BEGIN ours", "# END ours")
FILE = "# the DBA's rules\nlocal all all peer\n"


def test_put_in_front_when_absent_and_taken_out_exactly():
    once = BLOCK.put(FILE, ["local a b reject"])
    assert once == "# BEGIN ours\nlocal a b reject\n# END ours\n" + FILE
    assert BLOCK.present(once) and not BLOCK.present(FILE)
    assert BLOCK.lines(once) == ["local a b reject"] and BLOCK.lines(FILE) == []
    assert BLOCK.without(once) == FILE
    assert BLOCK.without(FILE) == FILE
    assert BLOCK.without(None) is None


def test_taking_out_leaves_blank_lines_of_the_file_as_they_were():
    text = "\n\n" + FILE
    assert BLOCK.without(BLOCK.put(text, ["x"])) == text
    assert BLOCK.put("", ["x"]) == "# BEGIN ours\nx\n# END ours\n"
    assert BLOCK.put(None, ["x"]) == BLOCK.put("", ["x"])


def test_put_is_idempotent_and_replaces_the_block_where_it_is():
    once = BLOCK.put(FILE, ["a", "b"])
    assert BLOCK.put(once, ["a", "b"]) == once
    moved = "host all all all trust\n" + once   # someone put a rule above our block
    assert BLOCK.put(moved, ["c"]) == "host all all all trust\n# BEGIN ours\nc\n# END ours\n" + FILE
    assert BLOCK.put(moved, ["c"], first=True) == "# BEGIN ours\nc\n# END ours\nhost all all all trust\n" + FILE
    assert BLOCK.put(BLOCK.put(moved, ["c"], first=True), ["c"], first=True) == BLOCK.put(moved, ["c"], first=True)


def test_two_blocks_live_side_by_side():
    other = ManagedBlock("# BEGIN theirs", "# END theirs")
    both = other.put(BLOCK.put(FILE, ["a"]), ["b"])
    assert BLOCK.lines(both) == ["a"] and other.lines(both) == ["b"]
    assert BLOCK.without(other.without(both)) == FILE
