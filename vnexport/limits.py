"""Bounds on the sizes, counts and seeds a user may ask for (no imports: the CLI's option
declarations use them without loading torch). Beyond them a run would only exhaust memory or
time; every refusal names the limit."""

MAX_IMG_SIZE = 2048  # input height/width
MAX_BATCH = 1024  # one batch (bench, TensorRT profiles, export)
MAX_INPUTS = 4096  # verification or calibration inputs
MAX_RUNS = 100_000  # timed or warm-up runs
MAX_SEED = 2 ** 32 - 1
MAX_THREADS = 1024
MAX_IMAGE_PIXELS = 64_000_000  # one image file, as stored and as resized (8000 x 8000)
