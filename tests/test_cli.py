"""The stable command line: `python -m attn mask ...`."""

import json

import numpy as np
import pytest
from PIL import Image


def test_mask_json_sliding_window(attn_cli):
    r = attn_cli("mask", "--pattern", "sliding_window", "--window", "4", "--n", "8", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["pattern"] == "sliding_window" and out["params"] == {"window": 4} and out["n"] == 8
    expected = [[int(k <= q and q - k < 4) for k in range(8)] for q in range(8)]
    assert out["mask"] == expected


def test_mask_tiles_at_131072(attn_cli):
    r = attn_cli("mask", "--pattern", "local_global", "--window", "256", "--global", "0", "--n", "131072", "--tiles", "8")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "mask" not in out and out["tile_size"] == 16384
    tiles = np.array(out["tiles"])
    assert tiles.shape == (8, 8) and ((tiles >= 0) & (tiles <= 1)).all()
    assert (tiles[:, 0] > 0).all()  # the global column shows in every tile row


@pytest.mark.parametrize(
    "args, message",
    [
        (["--pattern", "sliding_window", "--window", "0", "--n", "8"], "window must be at least 1"),
        (["--pattern", "local_global", "--window", "2", "--global", "8", "--n", "8"], "Global token 8"),
        (["--pattern", "document", "--docs", "3,4", "--n", "8"], "add up to 7"),
        (["--pattern", "causal", "--n", "0"], "between 1 and 131072"),
        (["--pattern", "causal", "--n", "5000"], "add --tiles"),
        (["--pattern", "local_global", "--global", "1,x", "--n", "8"], "not a whole number"),
        (["--pattern", "causal", "--n", "131072", "--tiles", "100000"], "exact counts stop at 4,096 a side"),
        (["--pattern", "causal", "--n", "64", "--tiles", "0"], "--tiles must be a positive number"),
        (["--pattern", "causal", "--n", "131072", "--tiles", "8", "--kernel-blocks", "1"], "blocks of 32 tokens or more"),
    ],
)
def test_bad_input_exits_2_with_sentence(args, message, attn_cli):
    r = attn_cli("mask", *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_png_and_npy(tmp_path, attn_cli):
    png = tmp_path / "m.png"
    r = attn_cli("mask", "--pattern", "chunked", "--chunk", "4", "--n", "16", "--format", "png", "--out", str(png))
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[0] == img.shape[1] >= 512
    cell = img.shape[0] // 16
    # Query 5 sees keys 4 and 5 only (chunk [4, 8), causal): dark cells there, white elsewhere.
    row = img[5 * cell + cell // 2, cell // 2 :: cell].astype(int).sum(axis=1)
    assert [i for i, v in enumerate(row) if v < 600] == [4, 5]
    npy = tmp_path / "m.npy"
    assert attn_cli("mask", "--pattern", "causal", "--n", "5", "--format", "npy", "--out", str(npy)).returncode == 0
    assert np.array_equal(np.load(npy), np.tril(np.ones((5, 5), dtype=np.uint8)))


def test_csv(attn_cli):
    r = attn_cli("mask", "--pattern", "prefix_lm", "--prefix", "2", "--n", "3", "--format", "csv")
    assert r.stdout.split() == ["1,1,0", "1,1,0", "1,1,1"]


def test_an_output_path_that_cannot_be_written_is_a_message(tmp_path, attn_cli):
    out = tmp_path / "no_such_folder" / "rows.json"
    r = attn_cli("bench", "--pattern", "causal", "--n", "17", "--backends", "naive", "--repeats", "1", "--json", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.endswith(f"error: No such file or directory: {out}\n")


def test_mask_text_and_kernel_blocks(capsys):
    from attn.cli import main

    # Pairs as characters: a causal window of 3 at N = 6, worked out by hand.
    assert main(["mask", "--pattern", "sliding_window", "--window", "3", "--n", "6", "--format", "text"]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert "15 pairs allowed" in head
    assert rows == ["█·····", "██····", "███···", "·███··", "··███·", "···███"]
    # Blocks of 2 at N = 5, window 4 (query q sees keys max(0, q - 3)..q), by hand: block (1, 0) holds
    # queries 2-3 and keys 0-1, all allowed: full. The last block row (query 4 alone) is cut short by N,
    # so never full; block (2, 0) holds (4, 1) allowed and (4, 0) masked. Diagonal blocks: partial.
    args = ["mask", "--pattern", "sliding_window", "--window", "4", "--n", "5", "--kernel-blocks", "2"]
    assert main(args + ["--format", "text"]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert rows == ["▒··", "█▒·", "▒▒▒"], rows
    assert "1 full (█), 5 partial (▒), 3 skipped (·)" in head, head
    # JSON carries the same blocks, with the pairs the kernel computes (every non-skipped block's area).
    assert main(args) == 0
    blocks = json.loads(capsys.readouterr().out)["kernel_blocks"]
    assert blocks["blocks"] == [[1, 0, 0], [2, 1, 0], [1, 1, 1]] and blocks["kinds"] == ["skipped", "partial", "full"]
    assert (blocks["full"], blocks["partial"], blocks["skipped"]) == (1, 5, 3)
    assert blocks["computed_pairs"] == 4 + 4 + 4 + 2 + 2 + 1  # the last row's blocks are 1 × 2, 1 × 2, 1 × 1
    # Too wide for a terminal, refused before anything N × N is built; a block size of 0 is refused too.
    assert main(["mask", "--pattern", "causal", "--n", "131072", "--format", "text"]) == 2
    assert "add --kernel-blocks 1024 or more" in capsys.readouterr().err
    assert main(["mask", "--pattern", "causal", "--n", "64", "--kernel-blocks", "0"]) == 2
    assert "positive block size" in capsys.readouterr().err
