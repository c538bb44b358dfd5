"""C source of the compiled feature kernels (built at run time by ``lbml.features.native``).

Each kernel is a line-by-line port of a built-in plugin's ``update`` (and of the rolling helpers in
``lbml.features.rolling``, ``lbml.features.indicators`` and nautilus' ``fast_mean`` /
``fast_std_with_mean``): the same floating-point operations in the same order, so every value is
equal with ``==`` to the Python reference. Rules kept throughout:

- ``a * b * c`` is ``(a * b) * c`` as in Python; an ``int`` operand is converted to ``double``
  first, as Python does (``n * mean`` with ``n`` an int);
- ``min``/``max`` are Python's two-argument builtins (``py_min``/``py_max``: the first argument
  unless the second compares strictly smaller/greater), not ``fmin``/``fmax``, whose NaN and
  signed-zero rules differ;
- ``log``, ``sqrt``, ``sin``, ``cos``, ``erf`` are the C library's, which CPython's ``math`` calls;
  ``math.fsum`` and float floor division are ports of CPython's own code;
- constants that Python computes with ``math`` (ln 2, 2π, √2) are passed in from Python, never
  folded by the compiler;
- built with ``-ffp-contract=off`` (no fused multiply-add) and without ``-ffast-math``.

All state lives in one caller-owned arena (offsets, no pointers), so a pipeline is copied or
pickled by copying bytes.
"""

SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAXP 64
#define NS_PER_DAY 86400000000000LL

typedef struct { int64_t n; int64_t kind[MAXP]; int64_t off[MAXP]; int64_t out[MAXP]; } Header;
typedef struct { char* base; int64_t cur; } Alloc;

static int64_t take(Alloc* a, int64_t bytes) {
    int64_t o = a->cur;
    a->cur += (bytes + 15) & ~(int64_t)15;
    return o;
}

static inline double py_max(double a, double b) { return b > a ? b : a; }
static inline double py_min(double a, double b) { return b < a ? b : a; }

/* ---- deque(maxlen=cap) of doubles ------------------------------------------------------------ */
typedef struct { int64_t off, cap, n, head; } Ring;
#define RD(b, r) ((double*)((b) + (r)->off))

static void ring_init(Alloc* a, Ring* r, int64_t cap) {
    int64_t o = take(a, cap * 8);
    if (r) { r->off = o; r->cap = cap; r->n = 0; r->head = 0; }
}
static inline double ring_get(char* b, const Ring* r, int64_t i) {  /* i-th oldest */
    int64_t j = r->head + i;
    if (j >= r->cap) j -= r->cap;
    return RD(b, r)[j];
}
static inline double ring_back(char* b, const Ring* r, int64_t k) { return ring_get(b, r, r->n - 1 - k); }
static inline void ring_append(char* b, Ring* r, double x) {
    double* d = RD(b, r);
    if (r->n == r->cap) {
        d[r->head] = x;
        if (++r->head == r->cap) r->head = 0;
    } else {
        int64_t j = r->head + r->n;
        if (j >= r->cap) j -= r->cap;
        d[j] = x;
        r->n++;
    }
}

/* ---- unbounded-in-Python deque of (index, value), bounded here by construction --------------- */
typedef struct { int64_t off_i, off_v, cap, n, head; } Deq;
#define DI(b, q) ((int64_t*)((b) + (q)->off_i))
#define DV(b, q) ((double*)((b) + (q)->off_v))

static void deq_init(Alloc* a, Deq* q, int64_t cap) {
    int64_t oi = take(a, cap * 8), ov = take(a, cap * 8);
    if (q) { q->off_i = oi; q->off_v = ov; q->cap = cap; q->n = 0; q->head = 0; }
}
static inline int64_t deq_slot(const Deq* q, int64_t i) {
    int64_t j = q->head + i;
    return j >= q->cap ? j - q->cap : j;
}
static inline void deq_push(char* b, Deq* q, int64_t i, double v) {
    int64_t j = deq_slot(q, q->n);
    DI(b, q)[j] = i;
    DV(b, q)[j] = v;
    q->n++;
}
static inline void deq_popleft(Deq* q) { if (++q->head == q->cap) q->head = 0; q->n--; }

/* ---- lbml.features.rolling ----------------------------------------------------------------- */
typedef struct { Ring v; double sum; int64_t window, full; } RSum;
static void rsum_init(Alloc* a, RSum* s, int64_t window) {
    ring_init(a, s ? &s->v : 0, window);
    if (s) { s->sum = 0.0; s->window = window; s->full = 0; }
}
static inline void rsum_push(char* b, RSum* s, double x) {
    if (s->full) s->sum -= ring_get(b, &s->v, 0);
    ring_append(b, &s->v, x);
    s->sum += x;
    if (!s->full) s->full = s->v.n == s->window;
}
static inline double rsum_push_mean(char* b, RSum* s, double x) {
    if (s->full) {
        s->sum -= ring_get(b, &s->v, 0);
        ring_append(b, &s->v, x);
        s->sum += x;
        return s->sum / (double)s->window;
    }
    ring_append(b, &s->v, x);
    s->sum += x;
    s->full = s->v.n == s->window;
    return s->full ? s->sum / (double)s->window : NAN;
}
static inline double rsum_mean(const RSum* s) { return s->v.n ? s->sum / (double)s->v.n : NAN; }

typedef struct { Ring v; double sum, sq; int64_t window, full; } RMom;
static void rmom_init(Alloc* a, RMom* s, int64_t window) {
    ring_init(a, s ? &s->v : 0, window);
    if (s) { s->sum = 0.0; s->sq = 0.0; s->window = window; s->full = 0; }
}
static inline void rmom_push(char* b, RMom* s, double x) {
    if (s->full) {
        double old = ring_get(b, &s->v, 0);
        s->sum -= old;
        s->sq -= old * old;
    }
    ring_append(b, &s->v, x);
    s->sum += x;
    s->sq += x * x;
    if (!s->full) s->full = s->v.n == s->window;
}
static inline double std_of(double total, double sq, int64_t n) {  /* RollingMoments.std, core._std */
    double mean = total / (double)n;
    double var = (sq - (double)n * mean * mean) / (double)(n - 1);
    return var > 0 ? sqrt(var) : 0.0;
}
static inline double rmom_std(const RMom* s) {
    if (s->v.n < 2) return NAN;
    return std_of(s->sum, s->sq, s->v.n);
}
static inline double rmom_push_std(char* b, RMom* s, double x) {
    rmom_push(b, s, x);
    if (!s->full) return NAN;
    return std_of(s->sum, s->sq, s->window);
}
static inline double rmom_push_zscore(char* b, RMom* s, double x) {
    rmom_push(b, s, x);
    if (!s->full) return NAN;
    int64_t n = s->window;
    double mean = s->sum / (double)n;
    double var = (s->sq - (double)n * mean * mean) / (double)(n - 1);
    double sd = var > 0 ? sqrt(var) : 0.0;
    return sd > 0 ? (x - mean) / sd : 0.0;
}

typedef struct { Ring xs, ys; double sx, sy, sxx, syy, sxy; int64_t window, full; } RPair;
static void rpair_init(Alloc* a, RPair* p, int64_t window) {
    ring_init(a, p ? &p->xs : 0, window);
    ring_init(a, p ? &p->ys : 0, window);
    if (p) { p->sx = p->sy = p->sxx = p->syy = p->sxy = 0.0; p->window = window; p->full = 0; }
}
static inline void rpair_push(char* b, RPair* p, double x, double y) {
    if (p->full) {
        double ox = ring_get(b, &p->xs, 0), oy = ring_get(b, &p->ys, 0);
        p->sx -= ox;
        p->sy -= oy;
        p->sxx -= ox * ox;
        p->syy -= oy * oy;
        p->sxy -= ox * oy;
    }
    ring_append(b, &p->xs, x);
    ring_append(b, &p->ys, y);
    p->sx += x;
    p->sy += y;
    p->sxx += x * x;
    p->syy += y * y;
    p->sxy += x * y;
    if (!p->full) p->full = p->xs.n == p->window;
}
static inline void rpair_corr_ratio(const RPair* p, double* corr, double* ratio) {
    double n = (double)p->xs.n, sx = p->sx, sy = p->sy;
    double vx = p->sxx - sx * sx / n;
    double vy = p->syy - sy * sy / n;
    double cxy = p->sxy - sx * sy / n;
    vx = py_max(vx, 0.0);
    vy = py_max(vy, 0.0);
    *corr = (vx <= 0.0 || vy <= 0.0) ? 0.0 : py_max(-1.0, py_min(1.0, cxy / sqrt(vx * vy)));
    *ratio = vy > 0.0 ? sqrt(vx / vy) : NAN;
}

typedef struct { Deq dq; int64_t window, i; } RExt;
static void rext_init(Alloc* a, RExt* e, int64_t window) {
    deq_init(a, e ? &e->dq : 0, window + 1);
    if (e) { e->window = window; e->i = -1; }
}
static inline void rext_push(char* b, RExt* e, double x) {
    Deq* q = &e->dq;
    e->i++;
    while (q->n && DV(b, q)[deq_slot(q, q->n - 1)] <= x) q->n--;
    deq_push(b, q, e->i, x);
    if (DI(b, q)[q->head] <= e->i - e->window) deq_popleft(q);
}

typedef struct { Ring values; Deq maxima; int64_t window, i; double worst; int64_t worst_peak; } RMdd;
static void rmdd_init(Alloc* a, RMdd* m, int64_t window) {
    ring_init(a, m ? &m->values : 0, window);
    deq_init(a, m ? &m->maxima : 0, window + 1);
    if (m) { m->window = window; m->i = -1; m->worst = 1.0; m->worst_peak = -1; }
}
static void rmdd_rescan(char* b, RMdd* m, int64_t start) {
    const Ring* v = &m->values;
    double peak = ring_get(b, v, 0);
    int64_t peak_index = start, worst_peak = -1, i = start;
    double worst = 1.0;
    for (int64_t k = 0; k < v->n; k++, i++) {
        double c = ring_get(b, v, k);
        if (c > peak) {
            peak = c;
            peak_index = i;
        } else {
            double ratio = c / peak;
            if (ratio < worst) {
                worst = ratio;
                worst_peak = peak_index;
            } else if (ratio == worst && worst_peak >= 0) {
                worst_peak = peak_index;
            }
        }
    }
    m->worst = worst;
    m->worst_peak = worst_peak;
}
static inline void rmdd_push(char* b, RMdd* m, double x) {
    int64_t i = ++m->i;
    ring_append(b, &m->values, x);
    Deq* q = &m->maxima;
    while (q->n && DV(b, q)[deq_slot(q, q->n - 1)] <= x) q->n--;
    deq_push(b, q, i, x);
    int64_t start = i - m->window + 1;
    if (DI(b, q)[q->head] < start) deq_popleft(q);
    if (0 < start && start == m->worst_peak + 1) {
        rmdd_rescan(b, m, start);
        return;
    }
    int64_t peak_index = DI(b, q)[q->head];
    double peak = DV(b, q)[q->head];
    if (x < peak) {
        double ratio = x / peak;
        if (ratio <= m->worst) {
            m->worst = ratio;
            m->worst_peak = peak_index;
        }
    }
}

/* ---- lbml.features.indicators ------------------------------------------------------------- */
typedef struct { int64_t period; double alpha, value; int64_t skip, count; double sum; } Ema;
static void ema_init(Ema* e, int64_t period, int64_t skip) {
    e->period = period;
    e->alpha = 2.0 / ((double)period + 1.0);
    e->value = NAN;
    e->skip = skip;
    e->count = 0;
    e->sum = 0.0;
}
static inline double ema_update(Ema* e, double x) {
    if (e->value == e->value) {
        e->value = (x - e->value) * e->alpha + e->value;
        return e->value;
    }
    if (e->skip > 0) { e->skip--; return NAN; }
    e->count++;
    e->sum += x;
    if (e->count == e->period) e->value = e->sum / (double)e->period;
    return e->value;
}

typedef struct { int64_t period; double value, prev; int64_t count; double gain, loss; } Rsi;
static void rsi_init(Rsi* r, int64_t period) {
    r->period = period; r->value = NAN; r->prev = NAN; r->count = 0; r->gain = 0.0; r->loss = 0.0;
}
static inline double rsi_update(Rsi* r, double x) {
    double prev = r->prev;
    r->prev = x;
    if (prev != prev) return NAN;
    double diff = x - prev;
    int64_t n = r->period;
    if (r->count < n) {
        r->count++;
        if (diff < 0) r->loss -= diff; else r->gain += diff;
        if (r->count < n) return NAN;
        r->gain /= (double)n;
        r->loss /= (double)n;
    } else {
        r->gain *= (double)(n - 1);
        r->loss *= (double)(n - 1);
        if (diff < 0) r->loss -= diff; else r->gain += diff;
        r->gain /= (double)n;
        r->loss /= (double)n;
    }
    double total = r->gain + r->loss;
    r->value = total != 0.0 ? r->gain / total : 0.5;
    return r->value;
}

typedef struct { Ema fast, slow, signal; double line, sig; } Macd;
static void macd_init(Macd* m, int64_t fast, int64_t slow, int64_t signal) {
    ema_init(&m->fast, fast, slow - fast);
    ema_init(&m->slow, slow, 0);
    ema_init(&m->signal, signal, 0);
    m->line = NAN;
    m->sig = NAN;
}
static inline void macd_update(Macd* m, double x, double* line, double* sig) {
    double f = ema_update(&m->fast, x);
    double s = ema_update(&m->slow, x);
    if (s == s) {
        m->line = f - s;
        m->sig = ema_update(&m->signal, m->line);
    }
    if (m->sig == m->sig) { *line = m->line; *sig = m->sig; } else { *line = NAN; *sig = NAN; }
}

/* ---- CPython's math.fsum and float floor division ----------------------------------------- */
static double py_fsum(char* b, const Ring* r) {
    double ps[256];
    int64_t n = 0;
    double special_sum = 0.0, inf_sum = 0.0;
    for (int64_t k = 0; k < r->n; k++) {
        double x = ring_get(b, r, k), xsave = x, y, t, hi, yr, lo;
        int64_t i = 0;
        for (int64_t j = 0; j < n; j++) {
            y = ps[j];
            if (fabs(x) < fabs(y)) { t = x; x = y; y = t; }
            hi = x + y;
            yr = hi - x;
            lo = y - yr;
            if (lo != 0.0) ps[i++] = lo;
            x = hi;
        }
        n = i;
        if (x != 0.0) {
            if (!isfinite(x)) {
                if (isfinite(xsave)) return NAN;  /* CPython raises OverflowError */
                if (isinf(xsave)) inf_sum += xsave;
                special_sum += xsave;
                n = 0;
            } else if (n < 256) {
                ps[n++] = x;
            }
        }
    }
    if (special_sum != 0.0) return isnan(inf_sum) ? NAN : special_sum;
    double hi = 0.0, x, y, yr, lo = 0.0;
    if (n > 0) {
        hi = ps[--n];
        while (n > 0) {
            x = hi;
            y = ps[--n];
            hi = x + y;
            yr = hi - x;
            lo = y - yr;
            if (lo != 0.0) break;
        }
        if (n > 0 && ((lo < 0.0 && ps[n - 1] < 0.0) || (lo > 0.0 && ps[n - 1] > 0.0))) {
            y = lo * 2.0;
            x = hi + y;
            yr = x - hi;
            if (y == yr) hi = x;
        }
    }
    return hi;
}

static double py_floordiv(double vx, double wx) {
    double mod = fmod(vx, wx), div = (vx - mod) / wx, floordiv;
    if (mod) {
        if ((wx < 0) != (mod < 0)) { mod += wx; div -= 1.0; }
    }
    if (div) {
        floordiv = floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, vx / wx);
    }
    return floordiv;
}

/* ---- plugins.features_core.CoreFeatures (kind 1) ------------------------------------------ */
typedef struct {
    int64_t nlags, lags_off, vol_window, volume_window;
    Ring closes, rets, volumes;
    double ret_sum, ret_sq, vol_sum, vol_sq;
    Ema ema;
} Core;

static void core_init(Alloc* a, Core* s, const double* p) {
    int64_t nl = (int64_t)p[0], maxlag = 0;
    for (int64_t k = 0; k < nl; k++) if ((int64_t)p[1 + k] > maxlag) maxlag = (int64_t)p[1 + k];
    int64_t lags_off = take(a, nl * 8);
    if (s) {
        s->nlags = nl;
        s->lags_off = lags_off;
        for (int64_t k = 0; k < nl; k++) ((int64_t*)(a->base + lags_off))[k] = (int64_t)p[1 + k];
        s->vol_window = (int64_t)p[1 + nl];
        s->volume_window = (int64_t)p[3 + nl];
        s->ret_sum = s->ret_sq = s->vol_sum = s->vol_sq = 0.0;
        ema_init(&s->ema, (int64_t)p[2 + nl], 0);
    }
    ring_init(a, s ? &s->closes : 0, maxlag + 1);
    ring_init(a, s ? &s->rets : 0, (int64_t)p[1 + nl]);
    ring_init(a, s ? &s->volumes : 0, (int64_t)p[3 + nl]);
}

static void core_step(char* b, Core* s, double high, double low, double close, double volume, double* out) {
    Ring* closes = &s->closes;
    if (closes->n) {
        double r = log(close / ring_back(b, closes, 0));
        if (s->rets.n == s->rets.cap) {
            double old = ring_get(b, &s->rets, 0);
            s->ret_sum -= old;
            s->ret_sq -= old * old;
        }
        ring_append(b, &s->rets, r);
        s->ret_sum += r;
        s->ret_sq += r * r;
    }
    ring_append(b, closes, close);
    if (s->volumes.n == s->volumes.cap) {
        double old = ring_get(b, &s->volumes, 0);
        s->vol_sum -= old;
        s->vol_sq -= old * old;
    }
    ring_append(b, &s->volumes, volume);
    s->vol_sum += volume;
    s->vol_sq += volume * volume;
    double ema = ema_update(&s->ema, close);

    int64_t n_closes = closes->n, j = 0;
    const int64_t* lags = (const int64_t*)(b + s->lags_off);
    for (int64_t k = 0; k < s->nlags; k++)
        out[j++] = n_closes > lags[k] ? log(close / ring_back(b, closes, lags[k])) : NAN;
    double vol = s->rets.n == s->vol_window ? std_of(s->ret_sum, s->ret_sq, s->rets.n) : NAN;
    out[j++] = vol;
    out[j++] = (ema == ema && vol > 0) ? log(close / ema) / vol : NAN;
    out[j++] = vol > 0 ? log(high / low) / vol : NAN;
    int64_t n_vol = s->volumes.n;
    if (n_vol == s->volume_window) {
        double sd = std_of(s->vol_sum, s->vol_sq, n_vol);
        out[j++] = sd > 0 ? (volume - s->vol_sum / (double)n_vol) / sd : 0.0;
    } else {
        out[j++] = NAN;
    }
}

/* ---- plugins.features_technical.TechnicalFeatures (kind 2) -------------------------------- */
typedef struct { Ema e1, e2, e3; Rsi rsi; Macd macd; Ring bb; double bb_k; } Technical;

static void technical_init(Alloc* a, Technical* s, const double* p) {
    if (s) {
        ema_init(&s->e1, (int64_t)p[0], 0);
        ema_init(&s->e2, (int64_t)p[1], 0);
        ema_init(&s->e3, (int64_t)p[2], 0);
        rsi_init(&s->rsi, (int64_t)p[3]);
        macd_init(&s->macd, (int64_t)p[4], (int64_t)p[5], (int64_t)p[6]);
        s->bb_k = p[8];
    }
    ring_init(a, s ? &s->bb : 0, (int64_t)p[7]);
}

static void technical_step(char* b, Technical* s, double high, double low, double close, double* out) {
    double v1 = ema_update(&s->e1, close), v2 = ema_update(&s->e2, close), v3 = ema_update(&s->e3, close);
    double rsi = rsi_update(&s->rsi, close);
    double line, signal;
    macd_update(&s->macd, close, &line, &signal);
    ring_append(b, &s->bb, (high + low + close) / 3.0);
    double upper = NAN, lower = NAN;
    int full = s->bb.n == s->bb.cap;
    if (full) {  /* nautilus fast_mean / fast_std_with_mean over the window, oldest first */
        int64_t length = s->bb.n;
        double total = 0.0;
        for (int64_t k = 0; k < length; k++) total += ring_get(b, &s->bb, k);
        double mean = total / (double)length;
        double acc = 0.0;
        for (int64_t k = 0; k < length; k++) {
            double v = ring_get(b, &s->bb, k) - mean;
            acc += v * v;
        }
        double std = sqrt(acc / (double)length);
        upper = mean + s->bb_k * std;
        lower = mean - s->bb_k * std;
    }
    double log_close = log(close);
    out[0] = v1 == v1 ? log_close - log(v1) : NAN;
    out[1] = v2 == v2 ? log_close - log(v2) : NAN;
    out[2] = v3 == v3 ? log_close - log(v3) : NAN;
    out[3] = rsi;
    double m = line / close, sg = signal / close;
    out[4] = m;
    out[5] = sg;
    out[6] = m - sg;
    if (full) {
        double width = upper - lower;
        out[7] = (upper - close) / close;
        out[8] = (lower - close) / close;
        out[9] = width > 0 ? (close - lower) / width : 0.5;
    } else {
        out[7] = out[8] = out[9] = NAN;
    }
}

/* ---- plugins.features_volatility.VolatilityFeatures (kind 3) ------------------------------ */
typedef struct {
    double prev_close, variance, mu, omega, alpha, beta, scale, ln2, gk_c;
    RSum sq, park, gk;
    RMdd drawdown;
    RExt highs;
} Volatility;

static void volatility_init(Alloc* a, Volatility* s, const double* p) {
    int64_t window = (int64_t)p[0], dd = (int64_t)p[1];
    if (s) {
        s->prev_close = NAN;
        s->mu = p[2]; s->omega = p[3]; s->alpha = p[4]; s->beta = p[5];
        s->variance = p[6]; s->scale = p[7]; s->ln2 = p[8]; s->gk_c = p[9];
    }
    rsum_init(a, s ? &s->sq : 0, window);
    rsum_init(a, s ? &s->park : 0, window);
    rsum_init(a, s ? &s->gk : 0, window);
    rmdd_init(a, s ? &s->drawdown : 0, dd);
    rext_init(a, s ? &s->highs : 0, dd);
}

static void volatility_step(char* b, Volatility* s, double open, double high, double low, double close, double* out) {
    double prev = s->prev_close;
    s->prev_close = close;
    double garch = NAN;
    if (prev == prev) {
        double r = log(close / prev);
        rsum_push(b, &s->sq, r * r);
        double eps = s->scale * r - s->mu;
        s->variance = s->omega + s->alpha * eps * eps + s->beta * s->variance;
        garch = sqrt(s->variance) / s->scale;
    }
    double hl = log(high / low);
    double co = log(close / open);
    double park_mean = rsum_push_mean(b, &s->park, hl * hl);
    double gk_mean = rsum_push_mean(b, &s->gk, 0.5 * hl * hl - s->gk_c * co * co);
    rmdd_push(b, &s->drawdown, close);
    rext_push(b, &s->highs, high);
    out[0] = garch;
    out[1] = s->sq.full ? sqrt(py_max(s->sq.sum, 0.0)) : NAN;
    if (s->park.full) {
        out[2] = sqrt(py_max(park_mean, 0.0) / (4.0 * s->ln2));
        out[3] = sqrt(py_max(gk_mean, 0.0));
    } else {
        out[2] = out[3] = NAN;
    }
    if (s->drawdown.values.n == s->drawdown.window) {
        int64_t window = s->drawdown.window;
        out[4] = 1.0 - s->drawdown.worst;
        Deq* q = &s->highs.dq;
        out[5] = (double)(s->highs.i - DI(b, q)[q->head]) / (double)window;
    } else {
        out[4] = out[5] = NAN;
    }
}

/* ---- plugins.features_lagged.LaggedFeatures (kind 4) -------------------------------------- */
typedef struct {
    int64_t nret, nlog, nstd, rets_off, logs_off, stds_off;
    Ring closes;
    RMom volume;
    double two_pi;
} Lagged;

static void lagged_init(Alloc* a, Lagged* s, const double* p) {
    int64_t nret = (int64_t)p[0];
    const double* rets = p + 1;
    int64_t nlog = (int64_t)p[1 + nret];
    const double* logs = p + 2 + nret;
    int64_t nstd = (int64_t)p[2 + nret + nlog];
    const double* stds = p + 3 + nret + nlog;
    int64_t volume_window = (int64_t)p[3 + nret + nlog + nstd];
    int64_t longest = 0;
    for (int64_t k = 0; k < nret; k++) if ((int64_t)rets[k] > longest) longest = (int64_t)rets[k];
    int64_t longest_log = 0;
    for (int64_t k = 0; k < nlog; k++) if ((int64_t)logs[k] > longest_log) longest_log = (int64_t)logs[k];
    if (longest_log > longest) longest = longest_log;
    int64_t rets_off = take(a, nret * 8), logs_off = take(a, nlog * 8), stds_off = take(a, nstd * (int64_t)sizeof(RMom));
    if (s) {
        s->nret = nret; s->nlog = nlog; s->nstd = nstd;
        s->rets_off = rets_off; s->logs_off = logs_off; s->stds_off = stds_off;
        for (int64_t k = 0; k < nret; k++) ((int64_t*)(a->base + rets_off))[k] = (int64_t)rets[k];
        for (int64_t k = 0; k < nlog; k++) ((int64_t*)(a->base + logs_off))[k] = (int64_t)logs[k];
        s->two_pi = p[4 + nret + nlog + nstd];
    }
    ring_init(a, s ? &s->closes : 0, longest + 1);
    for (int64_t k = 0; k < nstd; k++)
        rmom_init(a, s ? (RMom*)(a->base + stds_off) + k : 0, (int64_t)stds[k]);
    rmom_init(a, s ? &s->volume : 0, volume_window);
}

static void lagged_step(char* b, Lagged* s, int64_t ts, double close, double volume, double* out) {
    Ring* closes = &s->closes;
    RMom* stds = (RMom*)(b + s->stds_off);
    double* std_out = out + s->nret + s->nlog;
    if (closes->n) {
        double r = log(close / ring_back(b, closes, 0));
        for (int64_t k = 0; k < s->nstd; k++) std_out[k] = rmom_push_std(b, stds + k, r);
    } else {
        for (int64_t k = 0; k < s->nstd; k++) std_out[k] = NAN;
    }
    ring_append(b, closes, close);
    int64_t n = closes->n, j = 0;
    const int64_t* rets = (const int64_t*)(b + s->rets_off);
    const int64_t* logs = (const int64_t*)(b + s->logs_off);
    for (int64_t k = 0; k < s->nret; k++)
        out[j++] = n > rets[k] ? close / ring_back(b, closes, rets[k]) - 1.0 : NAN;
    for (int64_t k = 0; k < s->nlog; k++)
        out[j++] = n > logs[k] ? log(close / ring_back(b, closes, logs[k])) : NAN;
    j += s->nstd;
    out[j++] = rmom_push_zscore(b, &s->volume, volume);
    int64_t m = ts % NS_PER_DAY;
    if (m < 0) m += NS_PER_DAY;  /* Python's modulo */
    double angle = s->two_pi * (double)m / (double)NS_PER_DAY;
    out[j++] = sin(angle);
    out[j++] = cos(angle);
}

/* ---- plugins.features_microstructure.OrderFlowFeatures (kind 5) --------------------------- */
typedef struct {
    double prev_close, vpin_bucket_bars, sqrt2;
    int64_t vpin_buckets;
    RMom returns;
    RSum flow, flow_volume, sizing, ratio, ratio_volume;
    double bucket_size, bucket_filled, bucket_buy, vpin, amihud;
    int64_t vpin_stale;
    Ring bucket_imbalance, bucket_sizes;
} OrderFlow;

static void orderflow_init(Alloc* a, OrderFlow* s, const double* p) {
    int64_t flow_window = (int64_t)p[0], bvc = (int64_t)p[1], buckets = (int64_t)p[2];
    int64_t sizing = (int64_t)p[4], illiq = (int64_t)p[5];
    if (s) {
        s->prev_close = NAN;
        s->vpin_buckets = buckets;
        s->vpin_bucket_bars = p[3];
        s->sqrt2 = p[6];
        s->bucket_size = s->bucket_filled = s->bucket_buy = 0.0;
        s->vpin = NAN;
        s->amihud = NAN;
        s->vpin_stale = 0;
    }
    rmom_init(a, s ? &s->returns : 0, bvc);
    rsum_init(a, s ? &s->flow : 0, flow_window);
    rsum_init(a, s ? &s->flow_volume : 0, flow_window);
    rsum_init(a, s ? &s->sizing : 0, sizing);
    rsum_init(a, s ? &s->ratio : 0, illiq);
    rsum_init(a, s ? &s->ratio_volume : 0, illiq);
    ring_init(a, s ? &s->bucket_imbalance : 0, buckets);
    ring_init(a, s ? &s->bucket_sizes : 0, buckets);
}

static inline void of_push_bucket(char* b, OrderFlow* s, double imbalance, double size) {
    ring_append(b, &s->bucket_imbalance, imbalance);
    ring_append(b, &s->bucket_sizes, size);
    s->vpin_stale = 1;
}

static void of_fill_buckets(char* b, OrderFlow* s, double buy, double volume) {
    if (volume <= 0) return;
    double buy_share = buy / volume;
    double remaining = volume;
    if (s->bucket_size <= 0) {
        double mean = rsum_mean(&s->sizing);
        if (!(mean > 0)) return;
        s->bucket_size = s->vpin_bucket_bars * mean;
    }
    double capacity = s->bucket_size - s->bucket_filled;
    double take_ = py_min(remaining, capacity);
    s->bucket_filled += take_;
    s->bucket_buy += take_ * buy_share;
    remaining -= take_;
    if (take_ < capacity) return;
    /* _close_bucket */
    double closed = s->bucket_size;
    of_push_bucket(b, s, fabs(2.0 * s->bucket_buy - closed), closed);
    s->bucket_size = 0.0;
    s->bucket_filled = 0.0;
    s->bucket_buy = 0.0;
    double mean = rsum_mean(&s->sizing);
    double size = mean > 0 ? s->vpin_bucket_bars * mean : 0.0;
    if (size <= 0) {
        s->bucket_size = 0.0;
        return;
    }
    double q = py_floordiv(remaining, size);
    int64_t full = q >= (double)s->vpin_buckets ? s->vpin_buckets : (int64_t)q;
    double imbalance = fabs(2.0 * buy_share - 1.0) * size;
    for (int64_t k = 0; k < full; k++) of_push_bucket(b, s, imbalance, size);
    remaining -= q * size;  /* int(remaining // size) * size: q is integral, float(int(q)) == q */
    s->bucket_size = size;
    s->bucket_filled = remaining;
    s->bucket_buy = remaining * buy_share;
}

static void orderflow_step(char* b, OrderFlow* s, double close, double volume, double taker, double* out) {
    double prev = s->prev_close;
    s->prev_close = close;
    double r = prev == prev ? log(close / prev) : NAN;
    double buy;
    if (taker == taker) {
        buy = py_min(py_max(taker, 0.0), volume);
    } else if (r == r && s->returns.full) {
        double sigma = rmom_std(&s->returns);
        double z = sigma > 0 ? r / sigma : 0.0;
        buy = volume * 0.5 * (1.0 + erf(z / s->sqrt2));
    } else {
        buy = NAN;
    }
    if (r == r) rmom_push(b, &s->returns, r);
    if (buy == buy) {
        rsum_push(b, &s->flow, 2.0 * buy - volume);
        rsum_push(b, &s->flow_volume, volume);
        of_fill_buckets(b, s, buy, volume);
    }
    rsum_push(b, &s->sizing, volume);
    if (r == r && volume > 0) {
        double ratio_mean = rsum_push_mean(b, &s->ratio, fabs(r) / volume);
        s->amihud = ratio_mean * rsum_push_mean(b, &s->ratio_volume, volume);
    }
    if (s->flow_volume.full) {
        double total = s->flow_volume.sum;
        out[0] = total > 0 ? s->flow.sum / total : 0.0;
    } else {
        out[0] = NAN;
    }
    if (s->vpin_stale) {
        s->vpin_stale = 0;
        if (s->bucket_sizes.n == s->vpin_buckets)
            s->vpin = py_fsum(b, &s->bucket_imbalance) / py_fsum(b, &s->bucket_sizes);
    }
    out[1] = s->vpin;
    out[2] = s->amihud;
}

/* ---- plugins.features_cross_asset.CrossAssetFeatures (kind 6) ----------------------------- */
typedef struct {
    int64_t nlags, lags_off;
    Ring ref_ts, ref_close, ref_returns;  /* ref_ts holds int64 close times bit-cast in doubles' slots */
    double prev_ref, prev_close, prev_return;
    RPair pair;
} CrossAsset;

static void crossasset_init(Alloc* a, CrossAsset* s, const double* p) {
    int64_t window = (int64_t)p[0], nl = (int64_t)p[1], maxlag = 0;
    for (int64_t k = 0; k < nl; k++) if ((int64_t)p[2 + k] > maxlag) maxlag = (int64_t)p[2 + k];
    int64_t lags_off = take(a, nl * 8);
    if (s) {
        s->nlags = nl;
        s->lags_off = lags_off;
        for (int64_t k = 0; k < nl; k++) ((int64_t*)(a->base + lags_off))[k] = (int64_t)p[2 + k];
        s->prev_ref = s->prev_close = s->prev_return = NAN;
    }
    ring_init(a, s ? &s->ref_ts : 0, 4);
    ring_init(a, s ? &s->ref_close : 0, 4);
    ring_init(a, s ? &s->ref_returns : 0, maxlag);
    rpair_init(a, s ? &s->pair : 0, window);
}

static inline int64_t ring_get_i64(char* b, const Ring* r, int64_t i) {
    double d = ring_get(b, r, i);
    int64_t v;
    memcpy(&v, &d, 8);
    return v;
}

static void crossasset_on_ref(char* b, CrossAsset* s, int64_t ts, double close) {
    double d;
    memcpy(&d, &ts, 8);
    ring_append(b, &s->ref_ts, d);
    ring_append(b, &s->ref_close, close);
}

static void crossasset_step(char* b, CrossAsset* s, int64_t ts, double close, double* out) {
    double ref = NAN;
    for (int64_t k = s->ref_ts.n - 1; k >= 0; k--) {  /* newest reference bar closed before ts */
        if (ring_get_i64(b, &s->ref_ts, k) < ts) { ref = ring_get(b, &s->ref_close, k); break; }
    }
    double prev_ref = s->prev_ref, prev_close = s->prev_close, x = s->prev_return;
    s->prev_ref = ref;
    s->prev_close = close;
    s->prev_return = prev_close == prev_close ? log(close / prev_close) : NAN;
    if (ref == ref && prev_ref == prev_ref && x == x) {
        double y = log(ref / prev_ref);
        ring_append(b, &s->ref_returns, y);
        rpair_push(b, &s->pair, x, y);
    }
    int64_t n = s->ref_returns.n;
    const int64_t* lags = (const int64_t*)(b + s->lags_off);
    if (s->pair.full) rpair_corr_ratio(&s->pair, &out[0], &out[1 + s->nlags]);
    else out[0] = out[1 + s->nlags] = NAN;
    for (int64_t k = 0; k < s->nlags; k++) out[1 + k] = n >= lags[k] ? ring_back(b, &s->ref_returns, lags[k] - 1) : NAN;
}


/* ---- plugins.features_microstructure.QuoteFeatures (kind 7) ------------------------------- */
typedef struct { double bid, ask, bid_size, ask_size, spread_sum, depth_sum, ofi; int64_t n; } Quotes;

static void quotes_init(Quotes* s) {
    if (!s) return;
    s->bid = s->ask = s->bid_size = s->ask_size = NAN;
    s->spread_sum = s->depth_sum = s->ofi = 0.0;
    s->n = 0;
}

static inline void quotes_on_quote(Quotes* s, double bid, double ask, double bid_size, double ask_size) {
    double pb = s->bid;
    if (pb == pb) {
        double pa = s->ask, e = 0.0;
        if (bid >= pb) e += bid_size;
        if (bid <= pb) e -= s->bid_size;
        if (ask <= pa) e -= ask_size;
        if (ask >= pa) e += s->ask_size;
        s->ofi += e;
    }
    s->bid = bid;
    s->ask = ask;
    s->bid_size = bid_size;
    s->ask_size = ask_size;
    s->spread_sum += (ask - bid) / (0.5 * (bid + ask));
    s->depth_sum += 0.5 * (bid_size + ask_size);
    s->n++;
}

static void quotes_step(Quotes* s, double* out) {
    double bid = s->bid, ask = s->ask, spread, ofi;
    if (bid != bid) { out[0] = out[1] = out[2] = NAN; return; }
    int64_t n = s->n;
    if (n) {
        spread = 1e4 * s->spread_sum / (double)n;
        double mean_depth = s->depth_sum / (double)n;
        ofi = mean_depth > 0 ? s->ofi / mean_depth : 0.0;
    } else {
        spread = 1e4 * (ask - bid) / (0.5 * (bid + ask));
        ofi = 0.0;
    }
    double total = s->bid_size + s->ask_size;
    out[0] = spread;
    out[1] = total > 0 ? (s->bid_size - s->ask_size) / total : 0.0;
    out[2] = ofi;
    s->spread_sum = s->depth_sum = s->ofi = 0.0;
    s->n = 0;
}

/* ---- plugins.features_microstructure.DepthFeatures (kind 8) ------------------------------- */
typedef struct { Ring ts, bid, ask; RSum volume; } Depth;

static void depth_init(Alloc* a, Depth* s, const double* p) {
    ring_init(a, s ? &s->ts : 0, 4);
    ring_init(a, s ? &s->bid : 0, 4);
    ring_init(a, s ? &s->ask : 0, 4);
    rsum_init(a, s ? &s->volume : 0, (int64_t)p[0]);
}

static inline void ring_append_i64(char* b, Ring* r, int64_t v) {
    double d;
    memcpy(&d, &v, 8);
    ring_append(b, r, d);
}

static inline void depth_on_depth(char* b, Depth* s, int64_t ts, double bid, double ask) {
    ring_append_i64(b, &s->ts, ts);
    ring_append(b, &s->bid, bid);
    ring_append(b, &s->ask, ask);
}

static void depth_step(char* b, Depth* s, int64_t close_ts, double volume, double* out);

/* ---- plugins.features_cross_asset.FundingFeatures (kind 9) -------------------------------- */
typedef struct { Ring ts, rate; } Funding;

static void funding_init(Alloc* a, Funding* s) {
    ring_init(a, s ? &s->ts : 0, 4);
    ring_init(a, s ? &s->rate : 0, 4);
}

static inline void funding_on_funding(char* b, Funding* s, int64_t ts, double rate) {
    ring_append_i64(b, &s->ts, ts);
    ring_append(b, &s->rate, rate);
}

/* ---- the compiled set ------------------------------------------------------------------- */

static void depth_step(char* b, Depth* s, int64_t close_ts, double volume, double* out) {
    double mean = rsum_push_mean(b, &s->volume, volume);
    out[0] = out[1] = NAN;
    if (!(mean > 0)) return;
    for (int64_t k = s->ts.n - 1; k >= 0; k--) {  /* snapshots strictly before the close, newest first */
        if (ring_get_i64(b, &s->ts, k) < close_ts) {
            out[0] = ring_get(b, &s->bid, k) / mean;
            out[1] = ring_get(b, &s->ask, k) / mean;
            return;
        }
    }
}

static void funding_step(char* b, Funding* s, int64_t ts, double* out) {
    out[0] = NAN;
    for (int64_t k = s->ts.n - 1; k >= 0; k--) {
        if (ring_get_i64(b, &s->ts, k) < ts) { out[0] = ring_get(b, &s->rate, k); return; }
    }
}

static int64_t layout(char* base, const double* cfg, int64_t only) {
    Alloc a = { base, 0 };
    int64_t n = (int64_t)cfg[0];
    Header* h = base ? (Header*)base : 0;
    take(&a, sizeof(Header));
    if (h && only < 0) h->n = n;
    const double* c = cfg + 1;
    for (int64_t k = 0; k < n; k++) {
        int64_t kind = (int64_t)c[0], out = (int64_t)c[1], np = (int64_t)c[2];
        const double* p = c + 3;
        int w = base && (only < 0 || only == k);
        int64_t sizes[10] = { 0, sizeof(Core), sizeof(Technical), sizeof(Volatility), sizeof(Lagged),
                              sizeof(OrderFlow), sizeof(CrossAsset), sizeof(Quotes), sizeof(Depth), sizeof(Funding) };
        int64_t off = take(&a, sizes[kind]);
        void* s = w ? (void*)(base + off) : 0;
        if (w) { h->kind[k] = kind; h->off[k] = off; h->out[k] = out; }
        switch (kind) {
            case 1: core_init(&a, (Core*)s, p); break;
            case 2: technical_init(&a, (Technical*)s, p); break;
            case 3: volatility_init(&a, (Volatility*)s, p); break;
            case 4: lagged_init(&a, (Lagged*)s, p); break;
            case 5: orderflow_init(&a, (OrderFlow*)s, p); break;
            case 6: crossasset_init(&a, (CrossAsset*)s, p); break;
            case 7: quotes_init((Quotes*)s); break;
            case 8: depth_init(&a, (Depth*)s, p); break;
            case 9: funding_init(&a, (Funding*)s); break;
        }
        c = p + np;
    }
    return a.cur;
}

int64_t lbml_features_abi(void) { return 3; }
int64_t lbml_features_size(const double* cfg) { return layout(0, cfg, -1); }
void lbml_features_init(char* arena, const double* cfg, int64_t only) { layout(arena, cfg, only); }

void lbml_features_step(char* b, int64_t ts, double open, double high, double low, double close,
                        double volume, double taker, double* out) {
    const Header* h = (const Header*)b;
    for (int64_t k = 0; k < h->n; k++) {
        char* s = b + h->off[k];
        double* o = out + h->out[k];
        switch (h->kind[k]) {
            case 1: core_step(b, (Core*)s, high, low, close, volume, o); break;
            case 2: technical_step(b, (Technical*)s, high, low, close, o); break;
            case 3: volatility_step(b, (Volatility*)s, open, high, low, close, o); break;
            case 4: lagged_step(b, (Lagged*)s, ts, close, volume, o); break;
            case 5: orderflow_step(b, (OrderFlow*)s, close, volume, taker, o); break;
            case 6: crossasset_step(b, (CrossAsset*)s, ts, close, o); break;
            case 7: quotes_step((Quotes*)s, o); break;
            case 8: depth_step(b, (Depth*)s, ts, volume, o); break;
            case 9: funding_step(b, (Funding*)s, ts, o); break;
        }
    }
}

void lbml_features_on_reference_bar(char* b, int64_t ts, double close) {
    const Header* h = (const Header*)b;
    for (int64_t k = 0; k < h->n; k++)
        if (h->kind[k] == 6) crossasset_on_ref(b, (CrossAsset*)(b + h->off[k]), ts, close);
}

void lbml_features_on_quote(char* b, int64_t ts, double bid, double ask, double bid_size, double ask_size) {
    const Header* h = (const Header*)b;
    (void)ts;
    for (int64_t k = 0; k < h->n; k++)
        if (h->kind[k] == 7) quotes_on_quote((Quotes*)(b + h->off[k]), bid, ask, bid_size, ask_size);
}

void lbml_features_on_depth(char* b, int64_t ts, double bid_depth, double ask_depth) {
    const Header* h = (const Header*)b;
    for (int64_t k = 0; k < h->n; k++)
        if (h->kind[k] == 8) depth_on_depth(b, (Depth*)(b + h->off[k]), ts, bid_depth, ask_depth);
}

void lbml_features_on_funding(char* b, int64_t ts, double rate) {
    const Header* h = (const Header*)b;
    for (int64_t k = 0; k < h->n; k++)
        if (h->kind[k] == 9) funding_on_funding(b, (Funding*)(b + h->off[k]), ts, rate);
}

/* Events queued since the last bar (``on_quote`` ... append to a log in Python, far cheaper than a
   native call each), delivered in arrival order, then the bar: ``ev`` holds 5 doubles per event,
   the kernel kind and up to four values; ``ev_ts`` the event timestamps. */
void lbml_features_step_events(char* b, const int64_t* ev_ts, const double* ev, int64_t n_ev, int64_t ts,
                               double open, double high, double low, double close, double volume, double taker,
                               double* out) {
    for (int64_t i = 0; i < n_ev; i++) {
        const double* e = ev + 5 * i;
        switch ((int)e[0]) {
            case 6: lbml_features_on_reference_bar(b, ev_ts[i], e[1]); break;
            case 7: lbml_features_on_quote(b, ev_ts[i], e[1], e[2], e[3], e[4]); break;
            case 8: lbml_features_on_depth(b, ev_ts[i], e[1], e[2]); break;
            case 9: lbml_features_on_funding(b, ev_ts[i], e[1]); break;
        }
    }
    lbml_features_step(b, ts, open, high, low, close, volume, taker, out);
}

/* The batch replay of ``compute_features`` in one call: per bar, the quotes, depth snapshots,
   funding settlements and reference bars up to its close (``*_end[row]``, in that stream order, as
   the Python replay dispatches them), then ``lbml_features_step`` into row ``row`` of ``out``. */
typedef struct {
    int64_t n;
    const int64_t* ts;
    const double* a;
    const double* b;
    const double* c;
    const double* d;
    const int64_t* end;
} Stream;

void lbml_features_replay(char* arena, int64_t n_bars, const int64_t* ts, const double* open, const double* high,
                          const double* low, const double* close, const double* volume, const double* taker,
                          double* out, int64_t width, const Stream* quotes, const Stream* depth,
                          const Stream* funding, const Stream* ref) {
    int64_t qi = 0, di = 0, fi = 0, ri = 0;
    for (int64_t row = 0; row < n_bars; row++) {
        if (quotes)
            for (; qi < quotes->end[row]; qi++)
                lbml_features_on_quote(arena, quotes->ts[qi], quotes->a[qi], quotes->b[qi], quotes->c[qi], quotes->d[qi]);
        if (depth)
            for (; di < depth->end[row]; di++)
                lbml_features_on_depth(arena, depth->ts[di], depth->a[di], depth->b[di]);
        if (funding)
            for (; fi < funding->end[row]; fi++)
                lbml_features_on_funding(arena, funding->ts[fi], funding->a[fi]);
        if (ref)
            for (; ri < ref->end[row]; ri++)
                lbml_features_on_reference_bar(arena, ref->ts[ri], ref->a[ri]);
        lbml_features_step(arena, ts[row], open[row], high[row], low[row], close[row], volume[row], taker[row],
                           out + row * width);
    }
}
"""
