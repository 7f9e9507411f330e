"""Stand-ins for GPU-only libraries, named as fakes. They record the arguments vnexport passes
(``fake_polygraphy.CALLS``) so tests assert those; they never supply a value a test then
asserts as if TensorRT had produced it."""
