# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdb contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lines this collection owns in a text file others edit: a block between a BEGIN and an END marker line.

Put in front of the file when it is not there yet (the rules read first win in pg_hba.conf), replaced where it
is otherwise; taken out leaving the rest of the file exactly as it was before the block was put in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ManagedBlock:
    """The block between the lines ``begin`` and ``end``; every method takes and returns the file's text."""

    def __init__(self, begin, end):
        self.begin = begin
        self.end = end

    def present(self, text):
        return self.begin in (text or "")

    def _split(self, text):
        """(text before the block, its lines, text after the END marker)."""
        head, rest = text.split(self.begin, 1)
        block, tail = rest.split(self.end, 1)
        return head, [line for line in block.strip("\n").splitlines() if line.strip()], tail

    def lines(self, text):
        """The block's lines (blank ones left out), [] when there is no block."""
        return self._split(text)[1] if self.present(text) else []

    def put(self, text, lines, first=False):
        """``text`` with the block holding ``lines``: where it is, or in front when absent (always with ``first``)."""
        text = text or ""
        if first:
            text = self.without(text)
        if self.present(text):
            head, _old, tail = self._split(text)
        else:
            head, tail = "", "\n" + text
        return head + "\n".join([self.begin] + list(lines) + [self.end]) + tail

    def without(self, text):
        """``text`` with the block taken out (unchanged when it has none)."""
        if not self.present(text):
            return text
        head, _lines, tail = self._split(text)
        return head + (tail[1:] if tail.startswith("\n") else tail)
