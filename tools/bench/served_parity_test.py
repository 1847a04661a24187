"""served_parity.py: its prompt cutting and prefix comparison, and a CPU run of two real servers
on the default model (deterministic greedy decoding: every prompt identical to the end)."""

import json
import os
import tempfile
import unittest

import served_parity
from server_harness import server_binary, model_path


class ServedParityTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
        self.text = os.path.join(self.dir, "text.txt")
        with open(self.text, "w", encoding="utf-8") as f:
            f.write("too short\n\none two three four five six\n\nseven eight nine ten eleven twelve "
                    "thirteen\n\nfourteen fifteen sixteen seventeen eighteen nineteen\n")

    def test_passages_take_leading_words_of_long_enough_paragraphs(self):
        self.assertEqual(served_parity.passages(self.text, 2, 5),
                         ["one two three four five", "seven eight nine ten eleven"])
        with self.assertRaises(SystemExit):
            served_parity.passages(self.text, 4, 5)

    def test_identical_prefix_stops_at_the_first_difference(self):
        self.assertEqual(served_parity.identical_prefix([1, 2, 3, 4], [1, 2, 9, 4]), 2)
        self.assertEqual(served_parity.identical_prefix([1, 2], [1, 2, 3]), 2)
        self.assertEqual(served_parity.identical_prefix([5], [6]), 0)

    def test_two_cpu_servers_agree_token_for_token(self):
        command = f"{server_binary()} --backend=cpu --model={model_path()} --threads=2"
        report = os.path.join(self.dir, "parity.json")
        code = served_parity.main([f"--reference_cmd={command}", f"--candidate_cmd={command}",
                                   f"--text_file={self.text}", "--prompts=2", "--prompt_words=5",
                                   "--max_tokens=8", "--require_identical=8", f"--json={report}"])
        self.assertEqual(code, 0)
        with open(report, encoding="utf-8") as f:
            rows = json.load(f)["prompts"]
        self.assertEqual(len(rows), 2)
        for row in rows:
            self.assertEqual(len(row["reference"]), 8)
            self.assertEqual(row["reference"], row["candidate"])


if __name__ == "__main__":
    unittest.main()
