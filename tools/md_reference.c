/* The C peer of tools/bench_md.py: phi^4 molecular dynamics as a plain C program would do it.

   One thread, a neighbour table (2 D ints per site), the force fused into the momentum update,
   Omelyan's 2nd-order minimum-norm scheme with the momentum updates of adjacent steps merged
   (2 n + 1 force evaluations per trajectory of n steps), float64, periodic boundaries:

       P(c):  pi_x -= c [ -h sum_mu (phi_{x+mu} + phi_{x-mu}) + (4 c4 phi_x^2 + 2 c2) phi_x ]
       Q(c):  phi_x += c pi_x

   Usage: md_reference N_STEPS ROUNDS KAPPA LAMBDA L_0 ... L_{D-1}
   Prints the best over ROUNDS trajectories of N_STEPS steps of size 1/N_STEPS of the seconds
   per MD step, and sum phi (so that the compiler cannot drop the work). Built by bench_md.py
   with gcc -O3 -march=native. */

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void momentum_update(long volume, int dims, const int *restrict up,
                            const int *restrict down, const double *restrict phi,
                            double *restrict pi, double c, double h, double four_c4,
                            double two_c2) {
    for (long x = 0; x < volume; x++) {
        double n = 0.0;
        for (int mu = 0; mu < dims; mu++)
            n += phi[up[x * dims + mu]] + phi[down[x * dims + mu]];
        double p = phi[x];
        pi[x] -= c * (-h * n + (four_c4 * p * p + two_c2) * p);
    }
}

static void field_update(long volume, double *restrict phi, const double *restrict pi,
                         double c) {
    for (long x = 0; x < volume; x++)
        phi[x] += c * pi[x];
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: md_reference N_STEPS ROUNDS KAPPA LAMBDA L_0 ... L_{D-1}\n");
        return 2;
    }
    long n_steps = atol(argv[1]), rounds = atol(argv[2]);
    double kappa = atof(argv[3]), lambda = atof(argv[4]);
    int dims = argc - 5;
    long extent[16], volume = 1;
    for (int mu = 0; mu < dims; mu++) {
        extent[mu] = atol(argv[5 + mu]);
        volume *= extent[mu];
    }
    int *up = malloc(sizeof(int) * volume * dims), *down = malloc(sizeof(int) * volume * dims);
    double *phi = malloc(sizeof(double) * volume), *pi = malloc(sizeof(double) * volume);
    for (long x = 0; x < volume; x++) {
        long stride = 1, rest = x;
        for (int mu = dims - 1; mu >= 0; mu--) {  /* row-major, the last axis fastest */
            long coordinate = rest % extent[mu];
            rest /= extent[mu];
            long forward = coordinate + 1 == extent[mu] ? -(extent[mu] - 1) : 1;
            long backward = coordinate == 0 ? extent[mu] - 1 : -1;
            up[x * dims + mu] = (int)(x + forward * stride);
            down[x * dims + mu] = (int)(x + backward * stride);
            stride *= extent[mu];
        }
        phi[x] = 0.5 * ((double)rand() / RAND_MAX - 0.5);
        pi[x] = (double)rand() / RAND_MAX - 0.5;
    }
    double h = 2.0 * kappa, four_c4 = 4.0 * lambda, two_c2 = 2.0 * (1.0 - 2.0 * lambda);
    double xi = 0.1931833275037836, eps = 1.0 / n_steps, best = 1e300;
    for (long round = 0; round < rounds; round++) {
        double start = now();
        momentum_update(volume, dims, up, down, phi, pi, xi * eps, h, four_c4, two_c2);
        for (long step = 0; step < n_steps; step++) {
            field_update(volume, phi, pi, 0.5 * eps);
            momentum_update(volume, dims, up, down, phi, pi, (1.0 - 2.0 * xi) * eps, h,
                            four_c4, two_c2);
            field_update(volume, phi, pi, 0.5 * eps);
            double last = step + 1 == n_steps ? xi * eps : 2.0 * xi * eps;
            momentum_update(volume, dims, up, down, phi, pi, last, h, four_c4, two_c2);
        }
        double seconds = (now() - start) / n_steps;
        if (seconds < best)
            best = seconds;
    }
    double sum = 0.0;
    for (long x = 0; x < volume; x++)
        sum += phi[x];
    printf("%.9e %.17g\n", best, sum);
    return 0;
}
