"""Models (every activation, 1 and 3 channels, WRN-28-10's parameter count) and the BatchNorm that must work at
2nd and 3rd order and under torch.func."""
import pytest
import torch
from torch.func import functional_call, grad, jvp, vmap
from torch.nn import functional as F

from hessreg import activations, models
from tests.oracle import tiny_cnn
from tests.oracle import tiny_cnn_batch as batch


@pytest.mark.parametrize("activation", sorted(activations.ACTIVATIONS))
@pytest.mark.parametrize("name,channels,size", [("mlp-16x2", 1, 28), ("wrn-10-1", 1, 28), ("wrn-10-1", 3, 32)])
def test_models_forward_every_activation(name, channels, size, activation):
    torch.manual_seed(0)
    m = models.build_model(name, 10, channels, size, activation, beta=10.0)
    out = m(torch.randn(4, channels, size, size))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_wrn_28_10_parameter_count():
    m = models.build_model("wrn-28-10", 10, 3, 32)
    assert sum(p.numel() for p in m.parameters()) == 36_479_194  # Zagoruyko & Komodakis, CIFAR-10


def test_torchvision_resnets_use_our_batchnorm_and_activation():
    m = models.build_model("resnet18", 7, 3, 64, "gelu")
    assert any(isinstance(x, models.BatchNorm) for x in m.modules())
    assert not any(isinstance(x, (torch.nn.BatchNorm2d, torch.nn.ReLU)) for x in m.modules())
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_pretrained_weights_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not in the torch cache"):
        models.build_model("resnet34-pretrained", 10, 3, 224)


def test_pretrained_weights_load_from_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision
    src = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(src.conv1.weight, 0.5)
    name = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    (tmp_path / "checkpoints").mkdir()
    torch.save(src.state_dict(), tmp_path / "checkpoints" / name)
    m = models.build_model("resnet18-pretrained", 5, 3, 64)
    assert torch.all(m.conv1.weight == 0.5) and m.fc.out_features == 5


@pytest.mark.parametrize("bad", ["wrn-15-4", "mlp", "vgg16", "resnet20"])
def test_bad_model_names(bad):
    with pytest.raises(ValueError, match="valid forms|6n \\+ 4"):
        models.build_model(bad, 10, 1, 28)


def test_batchnorm_matches_pytorch_in_train_and_eval():
    torch.manual_seed(0)
    ours, ref = models.BatchNorm(4).double(), torch.nn.BatchNorm2d(4).double()
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    for primitive in (False, True):
        ours.load_state_dict(ref.state_dict())
        ours.primitive = primitive
        ref_out = ref(x)
        torch.testing.assert_close(ours(x), ref_out)
        torch.testing.assert_close(ours.running_mean, ref.running_mean)
        torch.testing.assert_close(ours.running_var, ref.running_var)
        ours.eval(), ref.eval()
        torch.testing.assert_close(ours(x), ref(x))
        ours.train(), ref.train()
        ref.load_state_dict(ours.state_dict())


def loss_and_params(model):
    x, y = batch()
    params = list(model.parameters())
    return F.cross_entropy(model(x), y), params


def test_batchnorm_second_order_native_equals_primitive():
    """The gradient of ‖∇L‖² (what PSAM differentiates) agrees between the two BatchNorm forwards."""
    results = []
    for primitive in (False, True):
        model = tiny_cnn()
        with models.batchnorm_mode(model, primitive=primitive, update_stats=False):
            loss, params = loss_and_params(model)
            g = torch.autograd.grad(loss, params, create_graph=True)
            results.append(torch.autograd.grad(sum((gi ** 2).sum() for gi in g), params))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_batchnorm_third_order_with_primitive_ops():
    """∇(vᵀHv) — the Hessian-trace penalty's gradient — exists with primitive BatchNorm on CPU, and matches a
    central finite difference of vᵀHv along a direction."""
    model = tiny_cnn()
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]

    def vhv():
        loss, _ = loss_and_params(model)
        g = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params, create_graph=True)
        return sum((a * b).sum() for a, b in zip(hv, v))

    with models.batchnorm_mode(model, primitive=True, update_stats=False):
        third = torch.autograd.grad(vhv(), params)
        d = [torch.randn_like(p) for p in params]

        def at(t):  # vᵀHv at θ + t·d
            with torch.no_grad():
                for p, di in zip(params, d):
                    p.add_(t * di)
            value = vhv().item()
            with torch.no_grad():
                for p, di in zip(params, d):
                    p.sub_(t * di)
            return value

        central = lambda h: (at(h) - at(-h)) / (2 * h)
        fd = (4 * central(5e-4) - central(1e-3)) / 3  # Richardson: truncation error O(h⁴)
    ad = sum((t * di).sum() for t, di in zip(third, d)).item()
    assert abs(fd - ad) <= 1e-6 * max(1.0, abs(ad))  # observed 1.4e-7; a wrong derivative is off by O(1)


def test_native_batchnorm_third_order_equals_primitive():
    """PyTorch's batch_norm refuses 3rd-order derivatives; the CPU path's closed-form double backward recomputes the
    batch statistics when a graph of it is built, so ∇(vᵀHv) exists there and equals the elementary-op one."""
    results = []
    for primitive in (False, True):
        model = tiny_cnn()
        params = list(model.parameters())
        v = [torch.randn_like(p, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(params)]
        with models.batchnorm_mode(model, primitive=primitive, update_stats=False):
            loss, _ = loss_and_params(model)
            g = torch.autograd.grad(loss, params, create_graph=True)
            hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params, create_graph=True)
            results.append(torch.autograd.grad(sum((a * b).sum() for a, b in zip(hv, v)), params))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_cpu_batchnorm_forward_over_reverse_equals_double_backward():
    """Eager forward-mode AD through the backward pass (dual weights, then autograd.grad) works through the CPU
    BatchNorm path and gives the Hessian-vector product of the elementary-op double backward."""
    import torch.autograd.forward_ad as fwAD
    model = tiny_cnn()
    x, y = batch()
    names, params = zip(*model.named_parameters())
    v = [torch.randn_like(p, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(params)]
    with models.batchnorm_mode(model, update_stats=False), fwAD.dual_level():
        prim = [p.detach().requires_grad_() for p in params]
        duals = {n: fwAD.make_dual(p, t) for n, p, t in zip(names, prim, v)}
        g = torch.autograd.grad(F.cross_entropy(functional_call(model, duals, (x,)), y), prim)
        fwd = [fwAD.unpack_dual(t).tangent for t in g]
    with models.batchnorm_mode(model, primitive=True, update_stats=False):
        g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
        rev = torch.autograd.grad(g, params, v)
    for a, b in zip(fwd, rev):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (8, 4)])
def test_cpu_batchnorm_first_order_is_pytorchs_bit_for_bit(shape):
    """Forward, running statistics and gradients equal F.batch_norm's exactly (float32): the committed records of
    first-order methods on BatchNorm models do not move."""
    torch.manual_seed(0)
    ours, ref = models.BatchNorm(shape[1]).train(), torch.nn.BatchNorm2d(shape[1]).train()
    if len(shape) == 2:
        ref = torch.nn.BatchNorm1d(shape[1]).train()
    with torch.no_grad():
        for m in (ours, ref):
            m.weight.copy_(torch.linspace(0.5, 2, shape[1])), m.bias.copy_(torch.linspace(-1, 1, shape[1]))
    x = torch.randn(*shape) * 3 + 1
    dy = torch.randn(*shape)
    outs = []
    for m in (ours, ref):
        xi = x.clone().requires_grad_()
        y = m(xi)
        outs.append([y, *torch.autograd.grad(y, (xi, m.weight, m.bias), dy), m.running_mean, m.running_var])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_batchnorm_under_torch_func_jvp_and_vmap_leaves_stats_untouched():
    model = tiny_cnn()
    x, y = batch()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    f = lambda p: F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)
    tangent = {k: torch.randn_like(v) for k, v in params.items()}
    _, hv = jvp(grad(f), (params,), (tangent,))
    per_sample = vmap(lambda xi: functional_call(model, (params, buffers), (xi[None].repeat(2, 1, 1, 1),)))(x)
    assert per_sample.shape == (5, 2, 3)
    after = {k: v for k, v in model.state_dict().items() if k in before}
    assert all(torch.equal(before[k], after[k]) for k in before)
    # forward-over-reverse Hv equals reverse-over-reverse Hv
    named = dict(model.named_parameters())
    with models.frozen_stats(model):
        loss = F.cross_entropy(model(x), y)
    g = torch.autograd.grad(loss, [named[n] for n in params], create_graph=True)
    hv2 = torch.autograd.grad(sum((gi * tangent[n]).sum() for gi, n in zip(g, params)), [named[n] for n in params])
    for n, h2 in zip(params, hv2):
        torch.testing.assert_close(hv[n], h2, rtol=1e-9, atol=1e-12)


def test_frozen_stats_and_updates():
    model = tiny_cnn()
    x, _ = batch()
    bn = model[1]
    rm = bn.running_mean.clone()
    with models.frozen_stats(model):
        model(x)
    assert torch.equal(bn.running_mean, rm) and bn.update_stats
    model(x)
    assert not torch.equal(bn.running_mean, rm) and bn.num_batches_tracked.item() == 1


def test_torch_func_hessian_through_batchnorm_matches_double_backward():
    """torch.func.hessian (vmap of forward-over-reverse) through train-mode BatchNorm with affine parameters:
    PyTorch's native kernel is wrong here (off by ~10%), so BatchNorm switches to elementary ops inside
    torch.func transforms; the dense Hessian must equal the one built by double backward."""
    from torch.func import hessian
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), models.BatchNorm(3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    m = m.double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 2, (6,))
    names, shapes = zip(*[(n, p.shape) for n, p in m.named_parameters()])
    flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    def f(t):
        parts = dict(zip(names, (c.reshape(s) for c, s in zip(t.split([s.numel() for s in shapes]), shapes))))
        return F.cross_entropy(functional_call(m, parts, (x,)), y)

    dense = hessian(f)(flat)
    t = flat.clone().requires_grad_()
    with models.frozen_stats(m):
        g = torch.autograd.grad(f(t), t, create_graph=True)[0]
        rows = torch.stack([torch.autograd.grad(g[i], t, retain_graph=True)[0] for i in range(len(g))])
    torch.testing.assert_close(dense, rows, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_small_cnn_max_pool_is_pytorchs_to_first_order(channels_last):
    """SmallCNN's MaxPool2d (computed in channels_last, format-keeping double backward): nn.MaxPool2d's values and
    gradients bit for bit in float32 (first-order records do not move), its double backward equal in float64."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(4, 3, 8, 8, generator=gen, dtype=dtype).contiguous(memory_format=fmt)
        v = torch.randn(x.shape, generator=gen, dtype=dtype)
        res = []
        for pool in (torch.nn.MaxPool2d(2), models.MaxPool2d(2)):
            xi = x.clone().requires_grad_()
            y = F.gelu(pool(F.gelu(xi)))
            g = torch.autograd.grad((y ** 2).sum(), xi, create_graph=True)[0]
            res.append((y, g, torch.autograd.grad((g * v).sum(), xi)[0]))
        assert torch.equal(res[0][0], res[1][0]) and torch.equal(res[0][1], res[1][1])
        assert res[1][0].is_contiguous(memory_format=fmt)
        if dtype == torch.float64:
            torch.testing.assert_close(res[1][2], res[0][2], rtol=1e-12, atol=1e-13)
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        t = fwAD.unpack_dual(models.MaxPool2d(2)(fwAD.make_dual(x, v))).tangent
    torch.testing.assert_close(t, torch.func.jvp(torch.nn.MaxPool2d(2), (x,), (v,))[1])


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_batchnorm_double_backward_equals_the_general_one(channels_last):
    """The 4-D (convolutional) double backward of the CPU BatchNorm, per-channel sums taken once, equals the
    general closed form (which 2-D BatchNorm keeps) and an elementary-op double backward, in float64."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 4, 5, 5, generator=gen, dtype=torch.float64) * 2 + 1).contiguous(memory_format=fmt)
    w, cw, cb = (torch.randn(4, generator=gen, dtype=torch.float64) for _ in range(3))
    dy, a = torch.randn(x.shape, generator=gen, dtype=torch.float64), torch.randn(x.shape, generator=gen,
                                                                                  dtype=torch.float64)
    _, mean, invstd = torch.ops.aten.native_batch_norm(x, w, torch.zeros_like(w), None, None, True, 0.1, 1e-5)
    fused = models._fused_double_backward(a, cw, cb, dy, x, w, mean, invstd)[:3]
    leaves = [t.clone().requires_grad_() for t in (dy, x, w)]
    with torch.enable_grad():  # the general form builds a graph (recomputed statistics) when grad is enabled
        general = models._TrainBatchNormBackward.apply(*leaves, mean, invstd, 1e-5)
        phi = (a * general[0]).sum() + (cw * general[1]).sum() + (cb * general[2]).sum()
        want = torch.autograd.grad(phi, leaves)
    for got, ref in zip(fused, want):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert fused[1].is_contiguous(memory_format=fmt)
