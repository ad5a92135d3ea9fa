import pytest
import torch
from torch import nn

from model.train import precision
from model.train.precision import autocast_context, compile_module, cpu_bf16_supported, effective_precision


@pytest.fixture
def forced_cpu_bf16(monkeypatch):
    def force(value: str) -> None:
        monkeypatch.setenv("PARAWAVE_CPU_BF16", value)
        cpu_bf16_supported.cache_clear()

    yield force
    cpu_bf16_supported.cache_clear()


def test_cpu_precision_follows_detection(forced_cpu_bf16):
    cpu = torch.device("cpu")
    forced_cpu_bf16("1")
    assert effective_precision(cpu, "bf16") == "bf16"
    assert effective_precision(cpu, "fp16") == "fp32"  # no fast fp16 kernels on this CPU family
    assert effective_precision(cpu, "fp32") == "fp32"
    with autocast_context(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    forced_cpu_bf16("0")
    assert effective_precision(cpu, "bf16") == "fp32"
    with autocast_context(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert effective_precision(torch.device("cuda"), "fp16") == "fp16"
    with pytest.raises(ValueError, match="precision"):
        effective_precision(cpu, "int8")


def test_compile_falls_back_to_eager_without_a_compiler(monkeypatch):
    module = nn.Linear(2, 2)
    assert compile_module(module, torch.device("cpu"), enabled=False) is module
    monkeypatch.setattr(precision.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    assert not precision.c_compiler_available()
    assert compile_module(module, torch.device("cpu")) is module


def test_cpu_compiles_take_the_cpu_inductor_options(monkeypatch):
    # the options are what makes the compiled channels-last WaveNet write its residual update once
    # instead of once per tap in its im2col (measured 1.04-1.07x; 1.01x since bf16 training uses
    # oneDNN convolutions instead); CUDA compiles keep inductor's defaults
    if not precision.c_compiler_available():
        pytest.skip("no C++ compiler: compile_module trains eagerly")
    seen = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: seen.append(kw) or module)
    module = nn.Linear(2, 2)
    compile_module(module, torch.device("cpu"))
    compile_module(module, torch.device("cuda"))
    assert seen[0]["options"] == precision.CPU_INDUCTOR_OPTIONS == {"realize_reads_threshold": 2}
    assert seen[1]["options"] is None
    import torch._inductor.config as inductor_config

    assert hasattr(inductor_config, "realize_reads_threshold")  # the knob exists in this torch
