"""A checkpoint (or data file) that needs arbitrary unpickling is refused with an
explanation, and the code it carries never runs."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch

from vitmae.cli import main
from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.runs.checkpoint import CheckpointError, read_weights

from .cli_runs import copy_run, resume


class Payload:
    """Unpickling this calls exec(): it would create `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('pwned')",)


@pytest.fixture
def side_effect(tmp_path):
    path = tmp_path / "pwned.txt"
    yield path
    assert not path.exists(), "the malicious pickle ran its code"


def _torch_file(path, side):
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload(side)}, path)
    return path


def _plain_pickle(path, side):
    path.write_bytes(pickle.dumps({"w": Payload(side)}))
    return path


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("write", [_torch_file, _plain_pickle])
def test_read_weights_refuses_a_malicious_pickle(tmp_path, side_effect, write):
    evil = write(tmp_path / "evil.pth", side_effect)
    with pytest.raises(CheckpointError, match="refused to load") as e:
        read_weights(evil)
    assert str(evil) in str(e.value) and "weights_only" in str(e.value)


def test_finetune_refuses_a_malicious_pretrained_file(tmp_path, side_effect, capsys):
    evil = _torch_file(tmp_path / "evil.pth", side_effect)
    code = main(["finetune", "-c", "digits", "model.arch=vit_micro_patch4",
                 f"finetune.pretrained={evil}", f"run.output_dir={tmp_path}", "run.name=ft"])
    err = capsys.readouterr().err
    assert code == 2 and "refused to load" in err and "arbitrary" in err, err


def test_resume_refuses_a_malicious_state_file(runs, tmp_path, side_effect, capsys):
    """Even with sizes and hashes rewritten to match, state.pt is only weights-only loaded."""
    run = copy_run(runs["ref"].run, tmp_path / "run")
    ckpt = run / "ckpt-000000012"
    _torch_file(ckpt / "state.pt", side_effect)
    meta = json.loads((ckpt / "meta.json").read_text())
    data = (ckpt / "state.pt").read_bytes()
    meta["files"]["state.pt"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / "meta.json").write_text(json.dumps(meta))
    code, out = resume(run, capsys)
    assert code == 2 and "refused to load" in out, out


def test_a_malicious_cifar_batch_is_refused(tmp_path, side_effect):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    _plain_pickle(folder / "test_batch", side_effect)
    with pytest.raises(ValueError, match="refused to load global 'builtins.exec'"):
        build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)), "test", False)
