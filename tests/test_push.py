"""torch_qinit.hub.push.push_to_hub and `torch-qinit push DIR REPO_ID`, against the stand-in Hub on 127.0.0.1."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hub_server import FakeHub

from torch_qinit.cli.main import main as cli_main
from torch_qinit.ghn.config import GHNConfig
from torch_qinit.ghn.model import GHN
from torch_qinit.hub import CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME, GHNLoadError, load_ghn, save_pretrained
from torch_qinit.hub.push import push_to_hub

TOKEN = "hf_standin_write_token"


def make_ghn(seed: int = 0) -> GHN:
    torch.manual_seed(seed)
    return GHN(GHNConfig(hidden=16, layers=1, heads=2, block_out=8, block_in=8, block_kernel=3, decoder_rank=4,
                         training={"command": "torch-qinit train --steps 10", "steps": 10}))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_push_then_load_roundtrip(hub: FakeHub, tmp_path: Path):
    ghn = make_ghn(0)
    ckpt = save_pretrained(ghn, tmp_path / "final")
    info = push_to_hub(ckpt, "me/ghn-qat", token=TOKEN)

    commits = hub.commits_of("me/ghn-qat")
    assert len(commits) == 1 and info.oid == commits[0]["oid"]
    assert sorted(commits[0]["paths"]) == sorted([CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME])
    assert commits[0]["authorization"] == f"Bearer {TOKEN}"
    assert commits[0]["summary"].startswith("Upload torch_qinit GHN checkpoint")
    assert "me/ghn-qat" in hub.created
    # the uploaded bytes are the checkpoint's bytes
    files = hub.repos["me/ghn-qat"]["main"][1]
    for name in (CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME):
        assert files[name] == (ckpt / name).read_bytes(), name

    loaded = load_ghn("me/ghn-qat", cache_dir=tmp_path / "cache")
    assert loaded.source_id == f"hf:me/ghn-qat@{info.oid}"
    assert loaded.weights_sha256 == json.loads((ckpt / CONFIG_NAME).read_text())["weights_sha256"]
    assert_same_weights(loaded, ghn)

    # a second push (a newer checkpoint) to the existing repo is a new commit that load_ghn then serves
    newer = make_ghn(1)
    info2 = push_to_hub(save_pretrained(newer, tmp_path / "final2"), "me/ghn-qat", token=TOKEN)
    assert info2.oid != info.oid and len(hub.commits_of("me/ghn-qat")) == 2
    assert_same_weights(load_ghn("me/ghn-qat", cache_dir=tmp_path / "cache"), newer)
    assert_same_weights(load_ghn("me/ghn-qat", revision=info.oid, cache_dir=tmp_path / "cache"), ghn)


def test_push_to_branch(hub: FakeHub, tmp_path: Path):
    ghn = make_ghn(2)
    info = push_to_hub(save_pretrained(ghn, tmp_path / "c"), "me/ghn", revision="v2", private=True, token=TOKEN)
    created = hub.created["me/ghn"]
    assert created.get("visibility") == "private" or created.get("private") is True, created
    assert hub.commits_of("me/ghn")[0]["revision"] == "v2"
    assert WEIGHTS_NAME not in hub.repos["me/ghn"]["main"][1]  # main is untouched
    loaded = load_ghn("me/ghn", revision="v2", cache_dir=tmp_path / "cache")
    assert loaded.source_id == f"hf:me/ghn@{info.oid}"
    assert_same_weights(loaded, ghn)


def test_push_generates_missing_model_card(hub: FakeHub, tmp_path: Path):
    ckpt = save_pretrained(make_ghn(0), tmp_path / "c")
    (ckpt / MODEL_CARD_NAME).unlink()
    push_to_hub(ckpt, "me/card", token=TOKEN)
    card = hub.repos["me/card"]["main"][1][MODEL_CARD_NAME].decode()
    assert card.startswith("---\nlibrary_name: torch_qinit")
    assert json.loads((ckpt / CONFIG_NAME).read_text())["weights_sha256"] in card


def test_push_refuses_a_broken_checkpoint_before_any_request(hub: FakeHub, tmp_path: Path):
    ckpt = save_pretrained(make_ghn(0), tmp_path / "c")
    blob = bytearray((ckpt / WEIGHTS_NAME).read_bytes())
    blob[-1] ^= 0xFF
    (ckpt / WEIGHTS_NAME).write_bytes(bytes(blob))
    with pytest.raises(GHNLoadError, match="checksum mismatch"):
        push_to_hub(ckpt, "me/broken", token=TOKEN)
    with pytest.raises(GHNLoadError, match="not a directory"):
        push_to_hub(tmp_path / "nothing-here", "me/broken", token=TOKEN)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GHNLoadError, match="missing"):
        push_to_hub(tmp_path / "empty", "me/broken", token=TOKEN)
    assert hub.count("POST") == 0 and "me/broken" not in hub.repos


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "bad name/x"])
def test_push_rejects_repo_ids_load_ghn_could_not_load(hub: FakeHub, tmp_path: Path, repo_id: str):
    ckpt = save_pretrained(make_ghn(0), tmp_path / "c")
    with pytest.raises(ValueError, match="repo"):
        push_to_hub(ckpt, repo_id, token=TOKEN)
    assert hub.count("POST") == 0


def test_cli_push(hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    ghn = make_ghn(3)
    ckpt = save_pretrained(ghn, tmp_path / "final")
    assert cli_main(["push", str(ckpt), "me/cli", "--token", TOKEN, "--message", "first GHN"]) == 0
    out = capsys.readouterr().out
    commit = hub.commits_of("me/cli")[0]
    assert commit["oid"] in out and "load_ghn('me/cli')" in out and commit["summary"] == "first GHN"
    assert_same_weights(load_ghn("me/cli", cache_dir=tmp_path / "cache"), ghn)

    # errors: a missing repo with --no-create, a broken directory; both exit 1 with a message
    assert cli_main(["push", str(ckpt), "me/absent", "--token", TOKEN, "--no-create"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("torch-qinit push: error:") and "404" in err
    assert cli_main(["push", str(tmp_path / "nope"), "me/cli", "--token", TOKEN]) == 1
    err = capsys.readouterr().err
    assert err.startswith("torch-qinit push: error:") and "not a directory" in err
    assert len(hub.commits_of("me/cli")) == 1
