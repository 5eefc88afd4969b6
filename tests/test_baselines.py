"""The field's baselines (FLIP-V/IT/MCL, ViTAF, SSDG, SA-FAS, CFPL): loss terms against hand computations, seeded
3-step golden losses, and one data config + one report schema for every method through the real CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from conftest import REPO

METHODS = ["flip_v", "flip_it", "flip_mcl", "vitaf", "ssdg", "safas", "cfpl"]

# ---------------------------------------------------------------------------------------------------------------------
# loss terms against hand computations


def test_grl_is_identity_forward_and_scales_the_gradient_by_minus_coeff():
    from fasvlm.models.ssdg import grad_reverse, grl_coeff

    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.25)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.25, -0.5, -0.75]))
    # SSDG's schedule 2 / (1 + exp(-10 p)) - 1: 0 at the start, tanh(5 p) in closed form
    assert grl_coeff(0, 100) == 0.0
    assert grl_coeff(50, 100) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_coeff(100, 100) == pytest.approx(math.tanh(5.0))


def test_asymmetric_triplet_loss_by_hand():
    from fasvlm.models.ssdg import asymmetric_triplet_labels, hard_triplet_loss

    # real faces of both domains share class 0; fakes of domain d get class 1 + d
    labels = asymmetric_triplet_labels(torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1]))
    assert labels.tolist() == [0, 1, 0, 2]
    # a=(0,0), p=(1,0) real; n=(0,0.5) fake. Valid triplets: (a,p,n): 1 - 0.5 + 0.1 = 0.6 > 0;
    # (p,a,n): 1 - sqrt(1.25) + 0.1 < 0 -> 0. Mean over the triplets with positive loss = 0.6
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]], requires_grad=True)
    loss = hard_triplet_loss(emb, torch.tensor([0, 0, 1]), margin=0.1)
    assert loss.item() == pytest.approx(0.6, abs=1e-6)
    loss.backward()
    assert torch.isfinite(emb.grad).all()
    # margin 0.3: (a,p,n) = 0.8, (p,a,n) = 1.3 - sqrt(1.25) -> mean of the two
    assert hard_triplet_loss(emb, torch.tensor([0, 0, 1]), 0.3).item() == pytest.approx(
        (0.8 + 1.3 - math.sqrt(1.25)) / 2, abs=1e-6)


def test_ssdg_feature_and_weight_normalisation():
    from fasvlm.models.ssdg import NormedClassifier, feature_norm

    assert torch.allclose(feature_norm(torch.tensor([[3.0, 4.0]])), torch.tensor([[3.0, 4.0]]) / math.sqrt(10))
    clf = NormedClassifier(4, 2)
    with torch.no_grad():
        clf.fc.weight.copy_(torch.tensor([[3.0, 0.0, 1.0, 2.0], [4.0, 1.0, 0.0, 0.0]]))
        clf.fc.bias.zero_()
    out = clf(torch.eye(4))  # row i = column i of the normalised weight
    assert torch.allclose(out.t(), torch.tensor([[0.6, 0.0, 1.0, 1.0], [0.8, 1.0, 0.0, 0.0]]))


def _supcon_by_hand(feats: torch.Tensor, labels: list[int], t: float, base: float) -> float:
    views = [feats[i, v] for v in range(feats.shape[1]) for i in range(feats.shape[0])]
    labs = [labels[i] for _ in range(feats.shape[1]) for i in range(feats.shape[0])]
    total = 0.0
    for a, (fa, la) in enumerate(zip(views, labs)):
        denom = sum(math.exp(float(fa @ fb) / t) for b, fb in enumerate(views) if b != a)
        pos = [b for b, lb in enumerate(labs) if b != a and lb == la]
        total += -sum(float(fa @ views[p]) / t - math.log(denom) for p in pos) / len(pos)
    return (t / base) * total / len(views)


def test_supcon_by_hand():
    from fasvlm.models.safas import supcon_loss

    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(3, 2, 4), dim=-1)  # 3 samples, 2 views
    labels = [0, 1, 0]
    got = supcon_loss(feats, torch.tensor(labels), temperature=0.1, base_temperature=0.07).item()
    assert got == pytest.approx(_supcon_by_hand(feats, labels, 0.1, 0.07), rel=1e-5)


def test_simclr_and_mcl_consistency_by_hand():
    from fasvlm.models.flip import mcl_consistency_loss, simclr_loss

    torch.manual_seed(0)
    z1, z2 = torch.randn(2, 3), torch.randn(2, 3)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    want = 0.0
    for i in range(4):
        partner = (i + 2) % 4
        logits = [float(z[i] @ z[j]) / 0.1 for j in range(4) if j != i]
        want += -(float(z[i] @ z[partner]) / 0.1 - math.log(sum(math.exp(v) for v in logits)))
    assert simclr_loss(z1, z2, 0.1).item() == pytest.approx(want / 4, rel=1e-5)
    sim1, sim2 = torch.tensor([[1.0, 0.0], [0.5, 0.5]]), torch.tensor([[0.0, 0.0], [0.5, -0.5]])
    assert mcl_consistency_loss(sim1, sim2).item() == pytest.approx((1 + 0 + 0 + 1) / 4)


def test_hyperplane_alignment_by_hand():
    from fasvlm.models.safas import hyperplane_align

    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 1.0]])
    # cosines: (0,1) = 0, (0,2) = -1/sqrt2, (1,2) = 1/sqrt2 -> least aligned partner: 0->2, 1->0, 2->0
    alpha = 0.9
    b2 = torch.tensor([-1.0, 1.0]) / math.sqrt(2)

    def moved(beta, far, norm):
        v = alpha * beta + (1 - alpha) * far
        return v / v.norm() * norm

    want = torch.stack([moved(torch.tensor([1.0, 0.0]), b2, 1.0),
                        moved(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]), 2.0),
                        moved(b2, torch.tensor([1.0, 0.0]), math.sqrt(2))])
    got = hyperplane_align(w, alpha)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.norm(dim=1), w.norm(dim=1))
    cos = lambda m: torch.nn.functional.normalize(m, dim=1) @ torch.nn.functional.normalize(m, dim=1).t()  # noqa: E731
    assert cos(got)[0, 2] > cos(w)[0, 2]  # the least aligned pair moved closer


def test_vitaf_adapter_cosine_and_cfpl_ptm_by_hand():
    from fasvlm.models.cfpl import ptm_loss
    from fasvlm.models.vitaf import adapter_cosine_loss

    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert adapter_cosine_loss([a, a]).item() == pytest.approx(1.0)
    assert adapter_cosine_loss([a, -a]).item() == pytest.approx(-1.0)
    assert adapter_cosine_loss([a, a.flip(-1)]).item() == pytest.approx(0.0)
    # equal logits: CE = ln 2; a confident right match: -log softmax
    assert ptm_loss(torch.zeros(2, 2), torch.zeros(2, 2)).item() == pytest.approx(math.log(2))
    got = ptm_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 0.0]])).item()
    assert got == pytest.approx((math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2)


def test_cfpl_prompt_text_reads_the_queries_through_a_frozen_text_tower():
    from fasvlm.models.cfpl import CFPL

    torch.manual_seed(0)
    model = CFPL("tiny", num_queries=4, num_heads=2).eval()
    q = torch.randn(1, 4, model.content_queries.shape[1])
    base = model.prompt_text(q)
    changed = q.clone()
    changed[:, 3] += 1.0  # the last query precedes the EOS token: the EOS output must change
    assert not torch.allclose(model.prompt_text(changed), base)
    assert all(not p.requires_grad for p in model.clip.text_model.parameters())  # the text tower is frozen


# ---------------------------------------------------------------------------------------------------------------------
# seeded 3-step golden losses (tiny presets, AdamW lr 1e-3)


def _system(method: str):
    from fasvlm.systems import CFPLSystem, FLIPSystem, SAFASSystem, SSDGSystem, ViTAFSystem

    if method.startswith("flip_"):
        return FLIPSystem(clip="tiny", variant=method.split("_")[1])
    return {
        "vitaf": lambda: ViTAFSystem(vision="tiny", bottleneck=8, freeze_backbone=False),
        "ssdg": lambda: SSDGSystem(resnet="tiny", image_size=64, num_domains=2, source_domains=["a", "b"]),
        "safas": lambda: SAFASSystem(resnet="tiny", image_size=64, num_domains=2, source_domains=["a", "b"]),
        "cfpl": lambda: CFPLSystem(clip="tiny", num_queries=4, num_heads=2),
    }[method]()


def _batch(seed: int, b: int = 8) -> dict:
    g = torch.Generator().manual_seed(seed)
    label = torch.tensor([0, 1] * (b // 2))
    x = torch.randn(b, 3, 64, 64, generator=g) + label.view(b, 1, 1, 1) * 0.5
    return {"pixel_values": x, "label": label, "domain": ["a", "a", "b", "b"] * (b // 4)}


GOLDEN: dict[str, list[float]] = {
    'flip_v': [1.124007225036621, 2.2515904903411865, 1.046946406364441],
    'flip_it': [1.1726962327957153, 0.6681821346282959, 0.5596542358398438],
    'flip_mcl': [3.490901231765747, 4.531654357910156, 3.361602306365967],
    'vitaf': [0.846168041229248, 1.9628443717956543, 0.9016804099082947],
    'ssdg': [1.073463797569275, 1.1130367517471313, 1.3202905654907227],
    'safas': [1.1210018396377563, 1.1318726539611816, 1.0316240787506104],
    'cfpl': [1.4213721752166748, 1.2697954177856445, 1.1951768398284912],
}


def _golden_run(method: str) -> list[float]:
    from fasvlm.systems.common import build_optimizer

    torch.manual_seed(0)
    system = _system(method)
    system.train()
    opt = build_optimizer(system, lr=1e-3, weight_decay=1e-2)
    torch.manual_seed(1)  # dropout, FWT, style mixing, random views
    losses = []
    for step in range(3):
        terms = system.loss_terms(_batch(step), 0.5) if method == "ssdg" else system.loss_terms(_batch(step))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["loss"].item())
    return losses


@pytest.mark.parametrize("method", METHODS)
def test_golden_three_steps(method):
    got = _golden_run(method)
    assert method in GOLDEN, f"paste into GOLDEN: {method!r}: {got}"
    assert got == pytest.approx(GOLDEN[method], rel=1e-4), got


# ---------------------------------------------------------------------------------------------------------------------
# one data config, one report schema


def _keys(obj, prefix=""):
    if isinstance(obj, dict):
        out = set()
        for k, v in obj.items():
            name = k if k not in ("celeba_spoof", "synth_lowlight", "synth_phonecam", "source") else "<domain>"
            out |= {f"{prefix}/{name}"} | _keys(v, f"{prefix}/{name}")
        return out
    return set()


def test_tiny_configs_share_one_data_section():
    data = {m: yaml.safe_load((REPO / "conf" / m / "tiny.yaml").read_text())["data"] for m in METHODS}
    baseline = yaml.safe_load((REPO / "conf" / "baseline" / "tiny.yaml").read_text())["data"]
    for m, d in data.items():
        assert d == baseline, m


# 7 x (fit 2 steps + test + export) through the CLI: ~30 s on 2 free cores; in make test because it is the one check that
# every system exports (a FLIP export failed unnoticed while this test was `slow`)
def test_every_method_accepts_the_same_data_config_and_writes_the_same_report_keys(tmp_path, synthetic_root,
                                                                                     monkeypatch):
    from fasvlm.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synthetic").symlink_to(synthetic_root)
    monkeypatch.chdir(tmp_path)
    fast = ["--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8", "--trainer.max_steps", "2",
            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
            "--trainer.enable_progress_bar", "false"]
    reports = {}
    for m in METHODS:
        run = ["--config", str(REPO / "conf" / m / "tiny.yaml"), *fast, "--trainer.default_root_dir", f"runs/{m}"]
        assert main(["fit", *run]) in (0, None)
        assert main(["test", *run, "--ckpt_path", "last"]) in (0, None)
        reports[m] = json.loads((tmp_path / "runs" / m / "test_metrics.json").read_text())
        # export -> rebuild -> the same scores as the checkpoint
        from fasvlm.systems import system_class
        from fasvlm.tools.export import load_exported

        ckpt = tmp_path / "runs" / m / "checkpoints" / "last.ckpt"
        assert main(["export", "--ckpt", str(ckpt), "--out", f"exported/{m}"]) == 0
        exported = load_exported(tmp_path / "exported" / m)
        cls = system_class(json.loads((tmp_path / "exported" / m / "config.json").read_text())["class_path"])
        reference = cls.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
        x = torch.randn(2, 3, exported.image_spec.size, exported.image_spec.size)
        with torch.no_grad():
            assert torch.allclose(exported(x), reference(x), atol=1e-5), m
    keys = {m: _keys(r) for m, r in reports.items()}
    for m in METHODS:
        assert keys[m] == keys["flip_v"], (m, keys[m] ^ keys["flip_v"])
        assert set(reports[m]["domains"]) == {"source", "celeba_spoof", "synth_lowlight", "synth_phonecam"}
        assert reports[m]["convention"]["scores"] == "P(attack)"


def test_registry_lists_every_baseline_system():
    from fasvlm.systems import SYSTEMS, system_class

    for path in ("fasvlm.systems.flip.FLIPSystem", "fasvlm.systems.vitaf.ViTAFSystem", "fasvlm.systems.ssdg.SSDGSystem",
                 "fasvlm.systems.safas.SAFASSystem", "fasvlm.systems.cfpl.CFPLSystem"):
        assert path in SYSTEMS
        cls = system_class(path)
        assert f"{cls.__module__}.{cls.__name__}" == path


@pytest.mark.parametrize("method", METHODS)
def test_paper_config_composes_with_a_second_protocol_offline(method, capsys, monkeypatch):
    """conf/<method>/paper.yaml with a protocol other than the one in its header (tests/test_configs.py merges that
    one) parses through the real CLI with no network; the paper config writes no protocol."""
    from fasvlm.cli import main

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    paper = REPO / "conf" / method / "paper.yaml"
    assert not {"sources", "targets", "val_sources"} & set(yaml.safe_load(paper.read_text())["data"]["init_args"])
    header = paper.read_text().splitlines()[0]
    protocol = next(p for p in ("mcio_m", "mcio_o") if f"conf/data/{p}.yaml" not in header)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(paper), "--config", f"conf/data/{protocol}.yaml", "--print_config"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    printed = yaml.safe_load(out[out.index("seed_everything:"):])
    assert [s["name"] for s in printed["data"]["init_args"]["sources"]]
    assert printed["model"]["class_path"].startswith("fasvlm.systems.")
