"""Building blocks of knowledge distillation (registers no method).

    method   the teacher (a cached trained baseline, frozen), where a stage sits in its
             pipeline and how the student is trained, and `DistillMethod`, the base of
             `kd`, `at` and `cwd`
    layers   a forward probe of a model's structure, named layer sets (output, atrous,
             stages, all), `FeatureTap` hooks that capture activations, `attention_map`
"""
