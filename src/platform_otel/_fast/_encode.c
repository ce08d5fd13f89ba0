/*
 * platform_otel._fast._encode: the OTLP wire encoding of one common span, in C.
 *
 * Why: encoding a server span in Python (otlp._lean_span) builds a few dozen
 * small bytes objects per span. In a one-worker uvicorn server under load that was
 * about 9 points of throughput (docs/performance.md), far more than the same code
 * costs in a micro-benchmark. This module writes the same bytes into one buffer.
 *
 * It is optional: built when a C compiler is available at install time, and
 * otlp.py falls back to its pure-Python encoder otherwise
 * (PLATFORM_OTEL_OTLP_ENCODER=python turns it off). It only encodes what it knows
 * exactly; for anything else (a trace state, an attribute value that is not a
 * plain str/bool/int/float, an int outside int64) it returns None and the Python
 * encoder runs. tests/test_speedups.py checks both give identical bytes.
 *
 * One function:
 *
 *   span_message(context, parent, name, kind, start, end, attributes, tail[, head])
 *       -> bytes | None
 *
 * ``context`` and ``parent`` are SpanContexts (6-tuples: trace_id, span_id,
 * is_remote, trace_flags, trace_state, is_valid); ``parent`` may be None.
 *
 * returns the ResourceSpans.scope_spans.spans entry (field 2 of ScopeSpans: tag
 * 0x12, length, Span message) with, in field order: trace_id, span_id,
 * parent_span_id, name, kind, start/end time, attributes, ``tail`` (already
 * encoded fields 10-15: dropped counts, events, links, status) and flags,
 * preceded by ``head`` (at most 16 bytes, default none: otlp.py's key of the
 * span's resource and scope, so a queued span is one plain bytes object).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    unsigned char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    unsigned char stack[1024];
} Buffer;

/* Out of line: only reached when the 1 KiB stack buffer is too small (rare). */
static int buf_grow(Buffer *b, Py_ssize_t extra) {
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *data;
    if (b->data == b->stack) {
        data = PyMem_Malloc(cap);
        if (data != NULL) memcpy(data, b->stack, b->len);
    } else {
        data = PyMem_Realloc(b->data, cap);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

#if defined(__GNUC__) || defined(__clang__)
#define HOT_INLINE static inline __attribute__((always_inline))
#else
#define HOT_INLINE static inline
#endif

HOT_INLINE int buf_reserve(Buffer *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    return buf_grow(b, extra);
}

static void buf_free(Buffer *b) {
    if (b->data != b->stack) PyMem_Free(b->data);
}

HOT_INLINE int put_bytes(Buffer *b, const void *src, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

HOT_INLINE int put_byte(Buffer *b, unsigned char c) {
    if (buf_reserve(b, 1) < 0) return -1;
    b->data[b->len++] = c;
    return 0;
}

HOT_INLINE int varint_size(uint64_t v) {
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

HOT_INLINE int put_varint(Buffer *b, uint64_t v) {
    unsigned char tmp[10];
    int n = 0;
    while (v >= 0x80) {
        tmp[n++] = (unsigned char)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    tmp[n++] = (unsigned char)v;
    return put_bytes(b, tmp, n);
}

HOT_INLINE int put_fixed64(Buffer *b, uint64_t v) {
    unsigned char tmp[8];
    for (int i = 0; i < 8; i++) tmp[i] = (unsigned char)(v >> (8 * i));
    return put_bytes(b, tmp, 8);
}

HOT_INLINE int put_be64(Buffer *b, uint64_t v) {
    unsigned char tmp[8];
    for (int i = 0; i < 8; i++) tmp[i] = (unsigned char)(v >> (8 * (7 - i)));
    return put_bytes(b, tmp, 8);
}

/* A length-delimited field whose payload is UTF-8 text. */
HOT_INLINE int put_text(Buffer *b, unsigned char tag, const char *s, Py_ssize_t n) {
    if (put_byte(b, tag) < 0 || put_varint(b, (uint64_t)n) < 0) return -1;
    return put_bytes(b, s, n);
}

/* Result codes of the helpers: 0 written, -1 Python error raised, 1 not handled here. */
#define NOT_HANDLED 1

HOT_INLINE int u64_of(PyObject *v, uint64_t *out) {
    if (!PyLong_CheckExact(v)) return NOT_HANDLED;
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NOT_HANDLED;
    }
    *out = x;
    return 0;
}

/* A 128-bit id (trace id), big-endian, read from the int's digits (no temporary objects). */
static int put_id128(Buffer *b, PyObject *v) {
    if (!PyLong_CheckExact(v)) return NOT_HANDLED;
    if (buf_reserve(b, 16) < 0) return -1;
#if PY_VERSION_HEX >= 0x030D0000
    int r = _PyLong_AsByteArray((PyLongObject *)v, b->data + b->len, 16, 0, 0, 1);
#else
    int r = _PyLong_AsByteArray((PyLongObject *)v, b->data + b->len, 16, 0, 0);
#endif
    if (r < 0) { /* negative, or wider than 128 bits: the Python encoder decides */
        PyErr_Clear();
        return NOT_HANDLED;
    }
    b->len += 16;
    return 0;
}

/* One attribute as a repeated KeyValue field (tag 0x4A). */
static int put_attribute(Buffer *b, PyObject *key, PyObject *value) {
    if (!PyUnicode_CheckExact(key)) return NOT_HANDLED;
    Py_ssize_t klen;
    const char *k = PyUnicode_AsUTF8AndSize(key, &klen);
    if (k == NULL) {
        PyErr_Clear(); /* lone surrogates: the Python encoder decides */
        return NOT_HANDLED;
    }
    unsigned char any[16]; /* tag + up to ten varint bytes, or tag + fixed64 */
    int any_len = 0;
    const char *text = NULL;
    Py_ssize_t tlen = 0;
    Py_ssize_t any_size; /* size of the AnyValue message */
    if (PyUnicode_CheckExact(value)) {
        text = PyUnicode_AsUTF8AndSize(value, &tlen);
        if (text == NULL) {
            PyErr_Clear();
            return NOT_HANDLED;
        }
        any_size = 1 + varint_size((uint64_t)tlen) + tlen;
    } else if (PyBool_Check(value)) {
        any[0] = 0x10;
        any[1] = value == Py_True ? 1 : 0;
        any_len = 2;
        any_size = 2;
    } else if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow != 0) return NOT_HANDLED;
        if (x == -1 && PyErr_Occurred()) return -1;
        uint64_t u = (uint64_t)x; /* negative: two's complement, ten bytes */
        any[0] = 0x18;
        any_len = 1;
        while (u >= 0x80) {
            any[any_len++] = (unsigned char)((u & 0x7F) | 0x80);
            u >>= 7;
        }
        any[any_len++] = (unsigned char)u;
        any_size = any_len;
    } else if (PyFloat_CheckExact(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        any[0] = 0x21;
        for (int i = 0; i < 8; i++) any[1 + i] = (unsigned char)(bits >> (8 * i));
        any_len = 9;
        any_size = 9;
    } else {
        return NOT_HANDLED;
    }
    /* KeyValue { key = 1; value = 2 } */
    Py_ssize_t kv_size = 1 + varint_size((uint64_t)klen) + klen + 1 +
                         varint_size((uint64_t)any_size) + any_size;
    if (put_byte(b, 0x4A) < 0 || put_varint(b, (uint64_t)kv_size) < 0) return -1;
    if (put_text(b, 0x0A, k, klen) < 0) return -1;
    if (put_byte(b, 0x12) < 0 || put_varint(b, (uint64_t)any_size) < 0) return -1;
    if (text != NULL) return put_text(b, 0x0A, text, tlen);
    return put_bytes(b, any, any_len);
}

/* opentelemetry.trace.span.DEFAULT_TRACE_STATE: the (empty) trace state of almost every
 * span; known by identity, it needs no call to its Python __len__. */
static PyObject *default_trace_state = NULL;

/* SpanContext is a 6-tuple: (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid). */
static int is_span_context(PyObject *ctx) {
    return PyTuple_Check(ctx) && PyTuple_GET_SIZE(ctx) == 6;
}

static int encode_body(Buffer *b, PyObject *const *args) {
    PyObject *context = args[0], *parent = args[1], *name = args[2], *kind = args[3];
    PyObject *start = args[4], *end = args[5], *attributes = args[6], *tail = args[7];
    int r;
    uint64_t u;

    if (!is_span_context(context)) return NOT_HANDLED;
    PyObject *trace_id = PyTuple_GET_ITEM(context, 0), *span_id = PyTuple_GET_ITEM(context, 1);
    PyObject *trace_state = PyTuple_GET_ITEM(context, 4);
    if (trace_state != Py_None && trace_state != default_trace_state) {
        int has_state = PyObject_IsTrue(trace_state);
        if (has_state < 0) return -1;
        if (has_state) return NOT_HANDLED;
    }
    if (!PyDict_CheckExact(attributes) || !PyBytes_CheckExact(tail)) return NOT_HANDLED;
    if (!PyUnicode_CheckExact(name)) return NOT_HANDLED;

    /* trace_id (1), span_id (2) */
    if (put_byte(b, 0x0A) < 0 || put_byte(b, 0x10) < 0) return -1;
    if ((r = put_id128(b, trace_id)) != 0) return r;
    if ((r = u64_of(span_id, &u)) != 0) return r;
    if (put_byte(b, 0x12) < 0 || put_byte(b, 0x08) < 0 || put_be64(b, u) < 0) return -1;
    /* parent_span_id (4) */
    int remote = 0;
    if (parent != Py_None) {
        if (!is_span_context(parent)) return NOT_HANDLED;
        if ((r = u64_of(PyTuple_GET_ITEM(parent, 1), &u)) != 0) return r;
        if (put_byte(b, 0x22) < 0 || put_byte(b, 0x08) < 0 || put_be64(b, u) < 0) return -1;
        remote = PyObject_IsTrue(PyTuple_GET_ITEM(parent, 2));
        if (remote < 0) return -1;
    }
    /* name (5) */
    Py_ssize_t nlen;
    const char *n = PyUnicode_AsUTF8AndSize(name, &nlen);
    if (n == NULL) {
        PyErr_Clear();
        return NOT_HANDLED;
    }
    if (nlen > 0 && put_text(b, 0x2A, n, nlen) < 0) return -1;
    /* kind (6): the SDK's SpanKind value + 1 */
    if ((r = u64_of(kind, &u)) != 0) return r;
    if (u > 4) return NOT_HANDLED;
    if (put_byte(b, 0x30) < 0 || put_byte(b, (unsigned char)(u + 1)) < 0) return -1;
    /* start_time_unix_nano (7), end_time_unix_nano (8): fixed64 */
    if ((r = u64_of(start, &u)) != 0) return r;
    if (put_byte(b, 0x39) < 0 || put_fixed64(b, u) < 0) return -1;
    if ((r = u64_of(end, &u)) != 0) return r;
    if (put_byte(b, 0x41) < 0 || put_fixed64(b, u) < 0) return -1;
    /* attributes (9) */
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &pos, &key, &value)) {
        if ((r = put_attribute(b, key, value)) != 0) return r;
    }
    /* dropped counts, events, links, status: encoded by the caller */
    if (put_bytes(b, PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail)) < 0) return -1;
    /* flags (16): fixed32, SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE (0x100) | IS_REMOTE (0x200) */
    unsigned char flags[6] = {0x85, 0x01, 0x00, remote ? 0x03 : 0x01, 0x00, 0x00};
    return put_bytes(b, flags, 6);
}

#define HEAD_MAX 16
#define ROOM (HEAD_MAX + 11) /* head, the 0x12 tag and the length varint, written last */

static PyObject *span_message(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8 && nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "span_message() takes 8 or 9 arguments");
        return NULL;
    }
    PyObject *head = nargs == 9 ? args[8] : NULL;
    if (head != NULL && (!PyBytes_CheckExact(head) || PyBytes_GET_SIZE(head) > HEAD_MAX)) {
        PyErr_SetString(PyExc_ValueError, "span_message(): head must be bytes of at most 16");
        return NULL;
    }
    Buffer b;
    b.data = b.stack;
    b.cap = sizeof(b.stack);
    b.len = ROOM;
    int r = encode_body(&b, args);
    if (r != 0) {
        buf_free(&b);
        if (r < 0) return NULL;
        Py_RETURN_NONE;
    }
    uint64_t body = (uint64_t)(b.len - ROOM);
    int start = ROOM - 1 - varint_size(body);
    unsigned char *p = b.data + start;
    *p++ = 0x12;
    while (body >= 0x80) {
        *p++ = (unsigned char)((body & 0x7F) | 0x80);
        body >>= 7;
    }
    *p = (unsigned char)body;
    if (head != NULL) {
        Py_ssize_t hlen = PyBytes_GET_SIZE(head);
        start -= (int)hlen;
        memcpy(b.data + start, PyBytes_AS_STRING(head), (size_t)hlen);
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.data + start, b.len - start);
    buf_free(&b);
    return out;
}

static PyMethodDef methods[] = {
    {"span_message", (PyCFunction)(void (*)(void))span_message, METH_FASTCALL,
     "The Span entry of a ScopeSpans message as wire bytes; None when not encodable here."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "platform_otel._fast._encode",
    "Optional C encoder for platform_otel._fast.otlp (see _encode.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__encode(void) {
    PyObject *span_module = PyImport_ImportModule("opentelemetry.trace.span");
    if (span_module != NULL) {
        default_trace_state = PyObject_GetAttrString(span_module, "DEFAULT_TRACE_STATE");
        Py_DECREF(span_module);
    }
    PyErr_Clear(); /* without it, trace states are checked through their __len__ */
    return PyModule_Create(&module);
}
