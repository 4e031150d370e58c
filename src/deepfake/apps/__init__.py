"""Layer 5: the user-facing applications behind ``deepfake``: predict, explain, bench.

May import any lower layer, stages included (the benchmarks time the stages' own functions).
"""
