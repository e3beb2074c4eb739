#!/usr/bin/python3
"""Export the benchmark's classification graph to ONNX for ONNX Runtime.

One combined graph, as ptune_py/pytorch_bench.py computes it: encoder with the
soft prompt, one decoder step, the two label rows of the head, softmax.
Built from ptune_py/torch_t5.py (float32) and exported with torch.onnx.export.

usage: python3 -m ptune_py.export_onnx MODEL_DIR OUT.onnx
"""
import os
import sys

from ptune_py import torch_t5  # noqa: E402
import torch  # noqa: E402


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    m = torch_t5.T5(model_dir)

    class Classifier(torch.nn.Module):
        def forward(self, ids, mask, prompt, labels):
            enc, enc_mask = m.encode(ids, mask, prompt)
            h = m.decode(torch.zeros(ids.shape[0], 1, dtype=torch.long), enc, enc_mask)
            return torch.softmax(m.token_logits(h[:, 0], labels), dim=-1)

    d_model = m.embed.shape[1]
    ids = torch.randint(3, 1000, (2, 128))
    torch.onnx.export(Classifier(), (ids, torch.ones_like(ids), torch.rand(20, d_model), torch.tensor([5, 6])),
                      out, input_names=["ids", "mask", "prompt", "labels"], output_names=["probs"],
                      dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"},
                                    "probs": {0: "batch"}}, opset_version=14)
    print(f"{out}: {os.path.getsize(out)} bytes, d_model {d_model}")


if __name__ == "__main__":
    main()
