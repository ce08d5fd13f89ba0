/*
 * platform_otel._asgi_speedups: the per-request work of _asgi.ServerTelemetry, in C.
 *
 * Why: after every Python-level reduction, a traced hello-world request still ran
 * about 1,100 Python bytecodes of ours (docs/performance.md, "The FastAPI target"),
 * and in a one-worker server each of them costs throughput. Starting the server
 * span (header scan, attributes, ids, context) and finishing it (route, status,
 * duration histogram, span end and its queue item) were ~650 of them, the ``send``
 * wrapper and the middleware coroutine ~200 more. This module does the same steps
 * in two calls and a callable object: ~150 bytecodes of ours are left per request.
 *
 * Two types. ``RequestPath`` (one per ServerTelemetry): ``begin(scope, send)`` starts
 * the request and returns an ``Exchange``, the ``send`` the application gets (it notes
 * the status; the last body chunk goes to a Python coroutine that times it);
 * ``end(exchange, exc)`` finishes the request.
 *
 * It is a second implementation of code that stays in Python, and the Python code
 * remains the reference: the start and finish steps (``RequestPath_start`` and
 * ``RequestPath_finish`` below) handle the common request and hand everything else
 * to the Python methods they were built with (``ServerTelemetry._start`` /
 * ``_finish``), *before* doing anything visible. Handed over: unknown HTTP methods, a sampler other than the default
 * ``parentbased_always_on``, an id generator other than the SDK's random one, a
 * span attribute length limit, a parent that is not sampled, a disabled tracer, a
 * request that raised or answered 5xx, a route under a mount. Rare lookups
 * (a new Host value, a new route, propagation headers) call back into the same
 * Python helpers the Python path uses, so caches are shared.
 * tests/test_asgi_speedups.py runs the same requests through both and compares
 * spans, queue items and histogram points.
 *
 * Optional like _speedups: built when a C compiler is available at install time;
 * without it (or with PLATFORM_OTEL_OTLP_ENCODER=python) the Python path runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <string.h>

/* Interned names, created at module init. */
static PyObject *s_method, *s_scheme, *s_headers, *s_path, *s_http_version, *s_client,
    *s_route, *s_root_path, *s_path_format, *s_http, *s_slash, *s_empty;
static PyObject *s_tracer, *s_name, *s_context, *s_parent, *s_kind, *s_attributes,
    *s_start_time, *s_resource, *s_instrumentation_scope, *s_end_time, *s_uncommon;
static PyObject *s_tracer_config, *s_is_enabled, *s_span_processors, *s_on_start,
    *s_parent_context, *s_textmap_global, *s_points, *s_lock, *s_acquire, *s_release,
    *s_counts, *s_count, *s_sum, *s_min, *s_max, *s_exemplars, *s_new_point, *s_record,
    *s_set_name_and_scalars, *s_end, *s_c_span_message, *s_head_pair, *s_emit, *s_sdk_resource;
/* Attribute keys (semantic conventions; the values of _asgi's constants). */
static PyObject *k_method, *k_scheme, *k_path, *k_address, *k_port, *k_version, *k_user_agent,
    *k_client, *k_route, *k_status;
static PyObject *empty_tuple, *one;

#define NOT_HANDLED 1

#if PY_VERSION_HEX < 0x030D0000
#define PyObject_GetOptionalAttr _PyObject_LookupAttr
#endif

/* The objects a RequestPath works with, all passed by ServerTelemetry._c_path() by name:
 *   fallbacks and shared helpers (ServerTelemetry's bound methods): py_start, py_finish,
 *     server, refresh_fields, extract, span_name, metric_attributes, set_span_in_context;
 *   ServerTelemetry's caches, shared with the Python path: hosts, names, metric_attrs;
 *   tracing: the LeanTracer and what it was built from, SDK and API types and constants;
 *   the duration histogram: a LeanHistogram (hist) or the SDK instrument (duration);
 *   the request's exchange: py_begin, py_end (fallbacks), final_send (the coroutine that
 *     sends the last body chunk), isolates and isolating (which servers' last send runs
 *     outside the span: ServerTelemetry._isolates_final_send and its cache), scope_key. */
#define OBJECT_FIELDS(X)                                                                      \
    X(py_start) X(py_finish) X(server) X(refresh_fields) X(extract) X(span_name)             \
    X(metric_attributes) X(set_span_in_context) X(hosts) X(names) X(metric_attrs) X(lean)    \
    X(sdk_tracer) X(processor) X(direct_for) X(scope) X(var) X(otlp) X(status_unset)         \
    X(span_context_type) X(lean_span_type) X(context_type) X(root_context) X(span_key)       \
    X(default_trace_state) X(flags_random) X(flags_parent) X(kind_server) X(kind_value)      \
    X(known_methods) X(propagate_dict) X(textmap) X(fields) X(getrandbits) X(time_ns)        \
    X(perf_counter) X(bits64) X(bits128) X(hist) X(duration) X(py_begin) X(py_end)          \
    X(final_send) X(isolates) X(isolating) X(scope_key)

typedef struct {
    PyObject_HEAD
#define DECLARE(name) PyObject *name;
    OBJECT_FIELDS(DECLARE)
#undef DECLARE
    Py_ssize_t max_attributes;
    double *bounds; /* the histogram's bucket boundaries */
    Py_ssize_t nbounds;
    int always_exemplar, trace_exemplar;
} RequestPath;

static int get_item(PyObject *dict, PyObject *key, PyObject **out) {
    /* dict.get(key) as a borrowed reference (NULL if absent); -1 on error. */
    *out = PyDict_GetItemWithError(dict, key);
    if (*out == NULL && PyErr_Occurred()) return -1;
    return 0;
}

static int truthy_or(PyObject *dict, PyObject *key, PyObject *fallback, PyObject **out) {
    /* ``dict.get(key) or fallback`` as a borrowed reference. */
    PyObject *v;
    if (get_item(dict, key, &v) < 0) return -1;
    if (v == NULL || v == Py_None) {
        *out = fallback;
        return 0;
    }
    int t = PyObject_IsTrue(v);
    if (t < 0) return -1;
    *out = t ? v : fallback;
    return 0;
}

/* A random non-zero id of ``bits`` bits from random.getrandbits (as RandomIdGenerator). */
static PyObject *random_id(RequestPath *self, PyObject *bits) {
    for (;;) {
        PyObject *v = PyObject_CallOneArg(self->getrandbits, bits);
        if (v == NULL) return NULL;
        int t = PyObject_IsTrue(v);
        if (t != 0) {
            if (t < 0) Py_CLEAR(v);
            return v;
        }
        Py_DECREF(v);
    }
}

/* The header scan and the attribute dict of _start. Returns 0, -1 (error) or NOT_HANDLED;
 * on 0, *attrs is a new dict and *items a new list of propagation headers or NULL. */
static int request_attributes(RequestPath *self, PyObject *scope, PyObject *method,
                              PyObject *scheme, PyObject **attrs_out, PyObject **items_out) {
    PyObject *headers, *host = NULL, *user_agent = NULL, *items = NULL, *attrs = NULL;
    PyObject *server = NULL, *key = NULL;
    *attrs_out = *items_out = NULL;

    /* the propagator's header names, re-read when the global propagator is replaced */
    PyObject *textmap;
    if (get_item(self->propagate_dict, s_textmap_global, &textmap) < 0) return -1;
    if (textmap != self->textmap) {
        PyObject *fields = PyObject_CallNoArgs(self->refresh_fields);
        if (fields == NULL) return -1;
        if (!PyFrozenSet_CheckExact(fields)) {
            Py_DECREF(fields);
            return NOT_HANDLED;
        }
        Py_XSETREF(self->fields, fields);
        Py_XINCREF(textmap);
        Py_XSETREF(self->textmap, textmap);
    }
    int any_field = PySet_GET_SIZE(self->fields) == 0; /* no usable fields: extract always */

    if (get_item(scope, s_headers, &headers) < 0) return -1;
    if (headers != NULL && headers != Py_None) {
        if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)) return NOT_HANDLED;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(headers);
        PyObject **rows = PySequence_Fast_ITEMS(headers);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *row = rows[i];
            if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 2) goto not_handled;
            PyObject *name = PyTuple_GET_ITEM(row, 0), *value = PyTuple_GET_ITEM(row, 1);
            if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value)) goto not_handled;
            Py_ssize_t len = PyBytes_GET_SIZE(name);
            const char *s = PyBytes_AS_STRING(name);
            if (len == 4 && memcmp(s, "host", 4) == 0) {
                host = value;
            } else if (len == 10 && memcmp(s, "user-agent", 10) == 0) {
                user_agent = value;
            } else {
                int wanted = any_field;
                if (!wanted) {
                    wanted = PySet_Contains(self->fields, name);
                    if (wanted < 0) goto error;
                }
                if (wanted) {
                    if (items == NULL && (items = PyList_New(0)) == NULL) goto error;
                    if (PyList_Append(items, row) < 0) goto error;
                }
            }
        }
    }

    /* server.address / server.port: parsed once per Host value (ServerTelemetry._server) */
    if (host != NULL) {
        key = PyTuple_Pack(2, host, scheme);
        if (key == NULL) goto error;
        if (get_item(self->hosts, key, &server) < 0) goto error;
        Py_XINCREF(server);
    }
    if (server == NULL) {
        server = PyObject_CallFunctionObjArgs(self->server, host ? host : Py_None, scope, scheme,
                                              NULL);
        if (server == NULL) goto error;
    }
    if (!PyTuple_CheckExact(server) || PyTuple_GET_SIZE(server) != 2) goto not_handled;

    attrs = PyDict_New();
    if (attrs == NULL) goto error;
    PyObject *path, *version, *client;
    if (PyDict_SetItem(attrs, k_method, method) < 0) goto error;
    if (PyDict_SetItem(attrs, k_scheme, scheme) < 0) goto error;
    if (truthy_or(scope, s_path, s_slash, &path) < 0) goto error;
    if (PyDict_SetItem(attrs, k_path, path) < 0) goto error;
    PyObject *address = PyTuple_GET_ITEM(server, 0), *port = PyTuple_GET_ITEM(server, 1);
    int has_address = PyObject_IsTrue(address);
    if (has_address < 0) goto error;
    if (has_address) {
        if (PyDict_SetItem(attrs, k_address, address) < 0) goto error;
        if (port != Py_None && PyDict_SetItem(attrs, k_port, port) < 0) goto error;
    }
    if (truthy_or(scope, s_http_version, NULL, &version) < 0) goto error;
    if (version != NULL && PyDict_SetItem(attrs, k_version, version) < 0) goto error;
    if (user_agent != NULL) {
        PyObject *text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(user_agent),
                                                PyBytes_GET_SIZE(user_agent), NULL);
        if (text == NULL) goto error;
        int r = PyDict_SetItem(attrs, k_user_agent, text);
        Py_DECREF(text);
        if (r < 0) goto error;
    }
    if (truthy_or(scope, s_client, NULL, &client) < 0) goto error;
    if (client != NULL) {
        if (!PyTuple_Check(client) && !PyList_Check(client)) goto not_handled;
        if (PySequence_Fast_GET_SIZE(client) > 0) {
            PyObject *client_address = PySequence_Fast_ITEMS(client)[0];
            int t = PyObject_IsTrue(client_address);
            if (t < 0) goto error;
            if (t && PyDict_SetItem(attrs, k_client, client_address) < 0) goto error;
        }
    }
    Py_XDECREF(key);
    Py_DECREF(server);
    *attrs_out = attrs;
    *items_out = items;
    return 0;
not_handled:
    Py_XDECREF(key);
    Py_XDECREF(server);
    Py_XDECREF(items);
    Py_XDECREF(attrs);
    return NOT_HANDLED;
error:
    Py_XDECREF(key);
    Py_XDECREF(server);
    Py_XDECREF(items);
    Py_XDECREF(attrs);
    return -1;
}

static int flags_of(PyObject *span_context, long *out) {
    PyObject *flags = PyTuple_GET_ITEM(span_context, 3);
    long v = PyLong_AsLong(flags);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

/* start(scope) -> (span, token, t0, method, span_name, scheme, outer): _start's result. */
static PyObject *RequestPath_start(RequestPath *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "start() takes one argument (the ASGI scope)");
        return NULL;
    }
    PyObject *scope = args[0];
    PyObject *attrs = NULL, *items = NULL, *extracted = NULL, *trace_id = NULL,
             *span_id = NULL, *span_context = NULL, *start_time = NULL, *span = NULL,
             *resource = NULL, *context = NULL, *outer = NULL, *token = NULL, *t0 = NULL,
             *result = NULL;
    PyObject *method, *scheme, *parent_context = self->root_context, *parent = Py_None;
    int r;

    if (!PyDict_Check(scope)) goto fallback;
    if (truthy_or(scope, s_method, s_empty, &method) < 0) return NULL;
    if (!PyUnicode_CheckExact(method)) goto fallback;
    r = PySet_Contains(self->known_methods, method);
    if (r < 0) return NULL;
    if (!r) goto fallback; /* _OTHER: the Python path */
    if (truthy_or(scope, s_scheme, s_http, &scheme) < 0) return NULL;
    if (!PyUnicode_CheckExact(scheme)) goto fallback;

    /* a disabled tracer makes non-recording spans: the Python path */
    PyObject *config = PyObject_GetAttr(self->sdk_tracer, s_tracer_config);
    if (config == NULL) return NULL;
    PyObject *enabled = PyObject_GetAttr(config, s_is_enabled);
    Py_DECREF(config);
    if (enabled == NULL) return NULL;
    r = PyObject_IsTrue(enabled);
    Py_DECREF(enabled);
    if (r < 0) return NULL;
    if (!r) goto fallback;

    r = request_attributes(self, scope, method, scheme, &attrs, &items);
    if (r < 0) return NULL;
    if (r == NOT_HANDLED) goto fallback;
    if (PyDict_GET_SIZE(attrs) > self->max_attributes) goto fallback_clean;

    long parent_flags = 0;
    if (items != NULL) {
        /* propagation headers: the propagator, through the Python helper */
        extracted = PyObject_CallOneArg(self->extract, items);
        if (extracted == NULL) goto error;
        if (!PyTuple_CheckExact(extracted) || PyTuple_GET_SIZE(extracted) != 2) goto fallback_clean;
        parent_context = PyTuple_GET_ITEM(extracted, 0);
        PyObject *candidate = PyTuple_GET_ITEM(extracted, 1);
        if (!PyDict_Check(parent_context)) goto fallback_clean;
        if (candidate != Py_None) {
            if (!PyTuple_Check(candidate) || PyTuple_GET_SIZE(candidate) != 6) goto fallback_clean;
            r = PyObject_IsTrue(PyTuple_GET_ITEM(candidate, 5)); /* is_valid */
            if (r < 0) goto error;
            if (r) {
                parent = candidate;
                if (flags_of(parent, &parent_flags) < 0) goto error;
                if (!(parent_flags & 1)) goto fallback_clean; /* not sampled: dropped */
            }
        }
    }

    /* ids and flags, as LeanTracer.start_span with the default sampler and random ids */
    PyObject *flags, *trace_state;
    if (parent == Py_None) {
        trace_id = random_id(self, self->bits128);
        if (trace_id == NULL) goto error;
        flags = self->flags_random;
        trace_state = self->default_trace_state;
    } else {
        trace_id = PyTuple_GET_ITEM(parent, 0);
        Py_INCREF(trace_id);
        flags = (parent_flags & 2) ? self->flags_random : self->flags_parent;
        trace_state = PyTuple_GET_ITEM(parent, 4);
        if (trace_state == Py_None) trace_state = self->default_trace_state;
    }
    span_id = random_id(self, self->bits64);
    if (span_id == NULL) goto error;
    span_context = PyType_GenericAlloc((PyTypeObject *)self->span_context_type, 6);
    if (span_context == NULL) goto error;
    PyTuple_SET_ITEM(span_context, 0, trace_id);
    trace_id = NULL;
    PyTuple_SET_ITEM(span_context, 1, span_id);
    span_id = NULL;
    Py_INCREF(Py_False);
    PyTuple_SET_ITEM(span_context, 2, Py_False);
    Py_INCREF(flags);
    PyTuple_SET_ITEM(span_context, 3, flags);
    Py_INCREF(trace_state);
    PyTuple_SET_ITEM(span_context, 4, trace_state);
    Py_INCREF(Py_True);
    PyTuple_SET_ITEM(span_context, 5, Py_True);

    /* the LeanSpan, with the fields its __init__ sets */
    start_time = PyObject_CallNoArgs(self->time_ns);
    if (start_time == NULL) goto error;
    resource = PyObject_GetAttr(self->sdk_tracer, s_sdk_resource); /* replaced after a fork */
    if (resource == NULL) goto error;
    PyTypeObject *span_type = (PyTypeObject *)self->lean_span_type;
    span = span_type->tp_new(span_type, empty_tuple, NULL);
    if (span == NULL) goto error;
    PyObject *span_method = method; /* never _OTHER here */
    if (PyObject_SetAttr(span, s_tracer, self->lean) < 0 ||
        PyObject_SetAttr(span, s_name, span_method) < 0 ||
        PyObject_SetAttr(span, s_context, span_context) < 0 ||
        PyObject_SetAttr(span, s_parent, parent) < 0 ||
        PyObject_SetAttr(span, s_kind, self->kind_server) < 0 ||
        PyObject_SetAttr(span, s_attributes, attrs) < 0 ||
        PyObject_SetAttr(span, s_start_time, start_time) < 0 ||
        PyObject_SetAttr(span, s_resource, resource) < 0 ||
        PyObject_SetAttr(span, s_instrumentation_scope, self->scope) < 0)
        goto error;

    /* span processors' on_start, unless the only one is the encoding batch processor */
    int direct = 0;
    if (self->direct_for != Py_None) {
        PyObject *current = PyObject_GetAttr(self->processor, s_span_processors);
        if (current == NULL) goto error;
        direct = current == self->direct_for;
        Py_DECREF(current);
    }
    if (!direct) {
        PyObject *call_args[3] = {self->processor, span, parent_context};
        PyObject *kwnames = PyTuple_Pack(1, s_parent_context);
        if (kwnames == NULL) goto error;
        PyObject *res = PyObject_VectorcallMethod(s_on_start, call_args,
                                                  2 | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
        Py_DECREF(kwnames);
        if (res == NULL) goto error;
        Py_DECREF(res);
    }

    /* the request's context: the span in the (usually empty) extracted context */
    if (PyDict_GET_SIZE(parent_context) == 0) {
        PyTypeObject *ctype = (PyTypeObject *)self->context_type;
        context = ctype->tp_new(ctype, empty_tuple, NULL);
        if (context == NULL) goto error;
        if (PyDict_SetItem(context, self->span_key, span) < 0) goto error;
    } else {
        context = PyObject_CallFunctionObjArgs(self->set_span_in_context, span, parent_context,
                                               NULL);
        if (context == NULL) goto error;
    }
    if (PyContextVar_Get(self->var, NULL, &outer) < 0) goto error;
    if (outer == NULL) {
        outer = Py_None;
        Py_INCREF(outer);
    }
    token = PyContextVar_Set(self->var, context);
    if (token == NULL) goto error;
    t0 = PyObject_CallNoArgs(self->perf_counter);
    if (t0 == NULL) {
        PyContextVar_Reset(self->var, token);
        goto error;
    }
    result = PyTuple_Pack(7, span, token, t0, method, span_method, scheme, outer);
    if (result == NULL) PyContextVar_Reset(self->var, token);
error:
    Py_XDECREF(attrs);
    Py_XDECREF(items);
    Py_XDECREF(extracted);
    Py_XDECREF(trace_id);
    Py_XDECREF(span_id);
    Py_XDECREF(span_context);
    Py_XDECREF(start_time);
    Py_XDECREF(resource);
    Py_XDECREF(span);
    Py_XDECREF(context);
    Py_XDECREF(outer);
    Py_XDECREF(token);
    Py_XDECREF(t0);
    return result;
fallback_clean:
    Py_XDECREF(attrs);
    Py_XDECREF(items);
    Py_XDECREF(extracted);
fallback:
    return PyObject_CallOneArg(self->py_start, scope);
}

/* LeanHistogram.record(amount, key, attributes, span_context), in C. */
static int record(RequestPath *self, double amount, PyObject *key, PyObject *attrs,
                  PyObject *span_context) {
    if (!(amount >= 0.0 && amount < INFINITY)) return 0; /* the SDK drops these */
    PyObject *hist = self->hist, *point = NULL, *lock = NULL, *exemplar = NULL;
    PyObject *points = PyObject_GetAttr(hist, s_points); /* replaced after a fork */
    int ok = -1, locked = 0;
    if (points == NULL) return -1;
    if (get_item(points, key, &point) < 0) goto done;
    if (point != NULL) {
        Py_INCREF(point);
    } else {
        point = PyObject_CallMethodObjArgs(hist, s_new_point, key, attrs, NULL);
        if (point == NULL) goto done;
    }
    Py_ssize_t lo = 0, hi = self->nbounds; /* bisect_left */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (self->bounds[mid] < amount)
            lo = mid + 1;
        else
            hi = mid;
    }
    Py_ssize_t index = lo;
    int sampled = 0;
    if (self->trace_exemplar && span_context != Py_None && PyTuple_Check(span_context) &&
        PyTuple_GET_SIZE(span_context) == 6) {
        long flags;
        if (flags_of(span_context, &flags) < 0) goto done;
        sampled = (int)(flags & 1);
    }
    if (self->always_exemplar || sampled) {
        PyObject *now = PyObject_CallNoArgs(self->time_ns);
        if (now == NULL) goto done;
        PyObject *value = PyFloat_FromDouble(amount);
        if (value == NULL) {
            Py_DECREF(now);
            goto done;
        }
        exemplar = PyTuple_Pack(3, value, now, span_context);
        Py_DECREF(value);
        Py_DECREF(now);
        if (exemplar == NULL) goto done;
    }
    lock = PyObject_GetAttr(hist, s_lock);
    if (lock == NULL) goto done;
    PyObject *res = PyObject_CallMethodNoArgs(lock, s_acquire);
    if (res == NULL) goto done;
    Py_DECREF(res);
    locked = 1;
    /* point.counts[index] += 1; count += 1; sum += amount; min, max; exemplars[index] */
    PyObject *counts = PyObject_GetAttr(point, s_counts);
    if (counts == NULL) goto done;
    if (!PyList_CheckExact(counts) || index >= PyList_GET_SIZE(counts)) {
        Py_DECREF(counts);
        PyErr_SetString(PyExc_RuntimeError, "histogram point has unexpected buckets");
        goto done;
    }
    PyObject *bumped = PyNumber_Add(PyList_GET_ITEM(counts, index), one);
    if (bumped == NULL) {
        Py_DECREF(counts);
        goto done;
    }
    PyList_SetItem(counts, index, bumped); /* steals */
    Py_DECREF(counts);
    PyObject *count = PyObject_GetAttr(point, s_count);
    if (count == NULL) goto done;
    bumped = PyNumber_Add(count, one);
    Py_DECREF(count);
    if (bumped == NULL) goto done;
    int r = PyObject_SetAttr(point, s_count, bumped);
    Py_DECREF(bumped);
    if (r < 0) goto done;
    PyObject *fields[3] = {s_sum, s_min, s_max};
    for (int i = 0; i < 3; i++) {
        PyObject *v = PyObject_GetAttr(point, fields[i]);
        if (v == NULL) goto done;
        double d = PyFloat_AsDouble(v);
        Py_DECREF(v);
        if (d == -1.0 && PyErr_Occurred()) goto done;
        double nd = d;
        if (i == 0)
            nd = d + amount;
        else if (i == 1 && amount < d)
            nd = amount;
        else if (i == 2 && amount > d)
            nd = amount;
        if (i != 0 && nd == d) continue;
        PyObject *nv = PyFloat_FromDouble(nd);
        if (nv == NULL) goto done;
        r = PyObject_SetAttr(point, fields[i], nv);
        Py_DECREF(nv);
        if (r < 0) goto done;
    }
    if (exemplar != NULL) {
        PyObject *exemplars = PyObject_GetAttr(point, s_exemplars);
        if (exemplars == NULL) goto done;
        r = PyList_CheckExact(exemplars) && index < PyList_GET_SIZE(exemplars)
                ? PyList_SetItem(exemplars, index, Py_NewRef(exemplar))
                : 0;
        Py_DECREF(exemplars);
        if (r < 0) goto done;
    }
    ok = 0;
done:
    if (locked) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *res2 = PyObject_CallMethodNoArgs(lock, s_release);
        Py_XDECREF(res2);
        if (type != NULL) {
            PyErr_Clear();
            PyErr_Restore(type, value, tb);
        } else if (res2 == NULL) {
            ok = -1;
        }
    }
    Py_XDECREF(lock);
    Py_XDECREF(exemplar);
    Py_XDECREF(point);
    Py_DECREF(points);
    return ok;
}

/* LeanSpan.end(end_ns) for the common span: encoded and queued here when the only span
 * processor is the encoding batch processor, else (or if anything is unusual) the method.
 * ``ctx`` and ``attrs`` are the span's _context and _attributes, already read by finish. */
static int end_span(RequestPath *self, PyObject *span, PyObject *ctx, PyObject *attrs,
                    PyObject *end_ns) {
    PyObject *processors = NULL, *c_encode = NULL, *pair = NULL, *end_time = NULL,
             *item = NULL, *emit = NULL;
    PyObject *parent = NULL, *name = NULL, *kind = NULL, *start = NULL, *resource = NULL,
             *uncommon = NULL, *res;
    int ok = -1;
    if (self->direct_for == Py_None) goto general;
    processors = PyObject_GetAttr(self->processor, s_span_processors);
    if (processors == NULL) goto done;
    if (processors != self->direct_for) goto general;
    c_encode = PyObject_GetAttr(self->otlp, s_c_span_message);
    if (c_encode == NULL) goto done;
    if (c_encode == Py_None) goto general;
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) != 6) goto general;
    long flags;
    if (flags_of(ctx, &flags) < 0) goto done;
    if (!(flags & 1)) goto general;
    if ((uncommon = PyObject_GetAttr(span, s_uncommon)) == NULL) goto done;
    int t = PyObject_IsTrue(uncommon);
    if (t < 0) goto done;
    if (t) goto general;
    if ((pair = PyObject_GetAttr(self->lean, s_head_pair)) == NULL) goto done;
    if ((resource = PyObject_GetAttr(span, s_resource)) == NULL) goto done;
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
        PyTuple_GET_ITEM(pair, 0) != resource || !PyBytes_CheckExact(PyTuple_GET_ITEM(pair, 1)))
        goto general;
    if ((kind = PyObject_GetAttr(span, s_kind)) == NULL) goto done;
    if (kind != self->kind_server) goto general;
    if ((parent = PyObject_GetAttr(span, s_parent)) == NULL) goto done;
    if ((name = PyObject_GetAttr(span, s_name)) == NULL) goto done;
    if ((start = PyObject_GetAttr(span, s_start_time)) == NULL) goto done;
    if (end_ns == Py_None) {
        if ((end_time = PyObject_CallNoArgs(self->time_ns)) == NULL) goto done;
    } else {
        end_time = Py_NewRef(end_ns);
    }
    PyObject *call_args[9] = {ctx,   parent, name, self->kind_value, start, end_time,
                              attrs, self->status_unset, PyTuple_GET_ITEM(pair, 1)};
    item = PyObject_Vectorcall(c_encode, call_args, 9, NULL);
    if (item == NULL) {
        PyErr_Clear(); /* LeanSpan.end's rule: the general encoder decides, and reports */
        goto general;
    }
    if (item == Py_None) goto general;
    if (PyObject_SetAttr(span, s_end_time, end_time) < 0) goto done;
    if ((emit = PyObject_GetAttr(self->lean, s_emit)) == NULL) goto done;
    res = PyObject_CallOneArg(emit, item);
    if (res == NULL) goto done;
    Py_DECREF(res);
    ok = 0;
    goto done;
general:
    res = PyObject_CallMethodOneArg(span, s_end, end_ns);
    if (res != NULL) {
        Py_DECREF(res);
        ok = 0;
    }
done:
    Py_XDECREF(processors);
    Py_XDECREF(c_encode);
    Py_XDECREF(pair);
    Py_XDECREF(end_time);
    Py_XDECREF(item);
    Py_XDECREF(emit);
    Py_XDECREF(parent);
    Py_XDECREF(name);
    Py_XDECREF(kind);
    Py_XDECREF(start);
    Py_XDECREF(resource);
    Py_XDECREF(uncommon);
    return ok;
}

/* The matched route's template (a new reference, or NULL with no error when there is none);
 * *mounted is set when the route sits under a mount (the Python path builds that one). */
static PyObject *route_template(PyObject *scope, PyObject *root_path, int *mounted) {
    PyObject *route, *template = NULL;
    *mounted = 0;
    if (get_item(scope, s_route, &route) < 0) return NULL;
    if (route == NULL || route == Py_None) return NULL;
    if (PyObject_GetOptionalAttr(route, s_path_format, &template) < 0) return NULL;
    if (template != NULL) {
        int t = PyObject_IsTrue(template);
        if (t < 0) {
            Py_DECREF(template);
            return NULL;
        }
        if (!t) Py_CLEAR(template);
    }
    if (template == NULL && PyObject_GetOptionalAttr(route, s_path, &template) < 0) return NULL;
    if (template == NULL) return NULL;
    if (!PyUnicode_Check(template)) {
        Py_DECREF(template);
        return NULL;
    }
    PyObject *current_root;
    if (truthy_or(scope, s_root_path, s_empty, &current_root) < 0) {
        Py_DECREF(template);
        return NULL;
    }
    int same = PyObject_RichCompareBool(current_root, root_path, Py_EQ);
    if (same < 0) {
        Py_DECREF(template);
        return NULL;
    }
    if (!same) *mounted = 1;
    return template;
}

/* finish(scope, started, root_path, status, exc, completed): _finish's work. */
static PyObject *RequestPath_finish(RequestPath *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "finish() takes 6 arguments");
        return NULL;
    }
    PyObject *scope = args[0], *started = args[1], *root_path = args[2], *status = args[3];
    PyObject *exc = args[4], *completed = args[5];
    PyObject *route = NULL, *end_time = NULL, *name = NULL, *key = NULL, *mattrs = NULL,
             *span_attrs = NULL, *ctx = NULL, *now = NULL;
    int ok = -1, mounted = 0;
    if (exc != Py_None || !PyTuple_CheckExact(started) || PyTuple_GET_SIZE(started) != 7 ||
        !PyDict_Check(scope) || !PyLong_CheckExact(status))
        goto fallback;
    PyObject *span = PyTuple_GET_ITEM(started, 0), *token = PyTuple_GET_ITEM(started, 1);
    PyObject *t0 = PyTuple_GET_ITEM(started, 2), *method = PyTuple_GET_ITEM(started, 3);
    PyObject *span_method = PyTuple_GET_ITEM(started, 4), *scheme = PyTuple_GET_ITEM(started, 5);
    if ((PyObject *)Py_TYPE(span) != self->lean_span_type || !PyFloat_CheckExact(t0)) goto fallback;
    long st = PyLong_AsLong(status);
    if (st == -1 && PyErr_Occurred()) goto fallback_error;
    if (st < 0 || st >= 500) goto fallback; /* error.type and status: the Python path */
    PyObject *tracer = PyObject_GetAttr(span, s_tracer);
    if (tracer == NULL) goto fallback_error;
    Py_DECREF(tracer);
    if (tracer != self->lean) goto fallback;
    if ((end_time = PyObject_GetAttr(span, s_end_time)) == NULL) goto fallback_error;
    if (end_time != Py_None) goto fallback; /* already ended */
    route = route_template(scope, root_path, &mounted);
    if (route == NULL && PyErr_Occurred()) goto fallback_error;
    if (mounted) goto fallback;

    /* From here on the request is ours: the token is reset whatever happens. */
    double elapsed;
    PyObject *end_ns = Py_None;
    if (completed == Py_None) {
        if ((now = PyObject_CallNoArgs(self->perf_counter)) == NULL) goto done;
        elapsed = PyFloat_AsDouble(now) - PyFloat_AS_DOUBLE(t0);
    } else {
        if (!PyTuple_Check(completed) || PyTuple_GET_SIZE(completed) != 2) {
            PyErr_SetString(PyExc_TypeError, "finish(): completed must be (seconds, ns)");
            goto done;
        }
        elapsed = PyFloat_AsDouble(PyTuple_GET_ITEM(completed, 0)) - PyFloat_AS_DOUBLE(t0);
        end_ns = PyTuple_GET_ITEM(completed, 1);
    }
    if (elapsed == -1.0 && PyErr_Occurred()) goto done;

    /* name "{method} {route}", http.route and the status on the span */
    if (route != NULL) {
        key = PyTuple_Pack(2, span_method, route);
        if (key == NULL) goto done;
        if (get_item(self->names, key, &name) < 0) goto done;
        Py_XINCREF(name);
        Py_CLEAR(key);
        if (name == NULL &&
            (name = PyObject_CallFunctionObjArgs(self->span_name, span_method, route, NULL)) ==
                NULL)
            goto done;
    }
    if ((span_attrs = PyObject_GetAttr(span, s_attributes)) == NULL) goto done;
    if (PyDict_CheckExact(span_attrs) && PyDict_GET_SIZE(span_attrs) + 2 <= self->max_attributes) {
        if (name != NULL && PyObject_SetAttr(span, s_name, name) < 0) goto done;
        if (route != NULL && PyDict_SetItem(span_attrs, k_route, route) < 0) goto done;
        if (st != 0 && PyDict_SetItem(span_attrs, k_status, status) < 0) goto done;
    } else { /* a count limit could apply: the span's own method, with its rules */
        PyObject *res = PyObject_CallMethodObjArgs(
            span, s_set_name_and_scalars, name ? name : Py_None, k_route,
            route ? route : Py_None, k_status, st != 0 ? status : Py_None, NULL);
        if (res == NULL) goto done;
        Py_DECREF(res);
    }

    /* the duration, recorded while the span is current (exemplars) */
    key = PyTuple_Pack(5, method, route ? route : Py_None, status, scheme, Py_None);
    if (key == NULL) goto done;
    if (get_item(self->metric_attrs, key, &mattrs) < 0) goto done;
    Py_XINCREF(mattrs);
    if (mattrs == NULL &&
        (mattrs = PyObject_CallOneArg(self->metric_attributes, key)) == NULL)
        goto done;
    if ((ctx = PyObject_GetAttr(span, s_context)) == NULL) goto done;
    if (self->hist != Py_None) {
        if (record(self, elapsed, key, mattrs, ctx) < 0) goto done;
    } else if (self->duration != Py_None) {
        PyObject *amount = PyFloat_FromDouble(elapsed);
        if (amount == NULL) goto done;
        PyObject *res = PyObject_CallMethodObjArgs(self->duration, s_record, amount, mattrs, NULL);
        Py_DECREF(amount);
        if (res == NULL) goto done;
        Py_DECREF(res);
    }
    if (end_span(self, span, ctx, span_attrs, end_ns) < 0) goto done;
    ok = 0;
done:
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (PyContextVar_Reset(self->var, token) < 0) {
            if (type != NULL) PyErr_Clear(); /* the first error is the one reported */
            else ok = -1;
        }
        if (type != NULL) PyErr_Restore(type, value, tb);
    }
    Py_XDECREF(route);
    Py_XDECREF(end_time);
    Py_XDECREF(name);
    Py_XDECREF(key);
    Py_XDECREF(mattrs);
    Py_XDECREF(span_attrs);
    Py_XDECREF(ctx);
    Py_XDECREF(now);
    if (ok < 0) return NULL;
    Py_RETURN_NONE;
fallback_error:
    PyErr_Clear();
fallback:
    Py_XDECREF(route);
    Py_XDECREF(end_time);
    return PyObject_Vectorcall(self->py_finish, args, 6, NULL);
}


/* -- the exchange: the ``send`` the application gets --------------------------------------- */

/* One traced request (ServerTelemetry._Exchange in Python): called as the application's
 * ``send``, it notes the response status and hands the last body chunk to ``final_send``
 * (a Python coroutine: it times the end of the response); ``end`` reads it back. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *scope, *started, *root_path, *send, *outer, *status, *completed, *final_send;
} Exchange;

static PyObject *s_type, *s_status, *s_more_body, *s_get, *s_self, *zero;

/* ``message.get(key)`` for dicts and other mappings; a new reference or NULL (absent). */
static PyObject *message_get(PyObject *message, PyObject *key) {
    if (PyDict_CheckExact(message)) {
        PyObject *v = PyDict_GetItemWithError(message, key);
        Py_XINCREF(v);
        return v;
    }
    PyObject *v = PyObject_CallMethodOneArg(message, s_get, key);
    if (v == Py_None) Py_CLEAR(v);
    return v;
}

static PyObject *Exchange_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames) {
    Exchange *self = (Exchange *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "send() takes one message");
        return NULL;
    }
    PyObject *message = args[0];
    PyObject *kind = PyDict_CheckExact(message) ? Py_XNewRef(PyDict_GetItemWithError(message, s_type))
                                                : PyObject_GetItem(message, s_type);
    if (kind == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, s_type);
        return NULL;
    }
    if (PyUnicode_CheckExact(kind)) {
        if (PyUnicode_CompareWithASCIIString(kind, "http.response.start") == 0) {
            PyObject *status = message_get(message, s_status);
            if (status == NULL && PyErr_Occurred()) goto error;
            int t = status == NULL ? 0 : PyObject_IsTrue(status);
            if (t < 0) {
                Py_DECREF(status);
                goto error;
            }
            if (!t) Py_XSETREF(status, Py_NewRef(zero));
            Py_XSETREF(self->status, status);
        } else if (PyUnicode_CompareWithASCIIString(kind, "http.response.body") == 0) {
            PyObject *more = message_get(message, s_more_body);
            if (more == NULL && PyErr_Occurred()) goto error;
            int t = more == NULL ? 0 : PyObject_IsTrue(more);
            Py_XDECREF(more);
            if (t < 0) goto error;
            if (!t) {
                Py_DECREF(kind);
                return PyObject_CallFunctionObjArgs(self->final_send, (PyObject *)self, message,
                                                    NULL);
            }
        }
    }
    Py_DECREF(kind);
    return PyObject_CallOneArg(self->send, message); /* the span still current: access logs */
error:
    Py_DECREF(kind);
    return NULL;
}

static int Exchange_traverse(Exchange *self, visitproc visit, void *arg) {
    Py_VISIT(self->scope);
    Py_VISIT(self->started);
    Py_VISIT(self->root_path);
    Py_VISIT(self->send);
    Py_VISIT(self->outer);
    Py_VISIT(self->status);
    Py_VISIT(self->completed);
    Py_VISIT(self->final_send);
    return 0;
}

static int Exchange_clear(Exchange *self) {
    Py_CLEAR(self->scope);
    Py_CLEAR(self->started);
    Py_CLEAR(self->root_path);
    Py_CLEAR(self->send);
    Py_CLEAR(self->outer);
    Py_CLEAR(self->status);
    Py_CLEAR(self->completed);
    Py_CLEAR(self->final_send);
    return 0;
}

static void Exchange_dealloc(Exchange *self) {
    PyObject_GC_UnTrack(self);
    Exchange_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Exchange_members[] = {
    {"scope", T_OBJECT, offsetof(Exchange, scope), READONLY, NULL},
    {"started", T_OBJECT, offsetof(Exchange, started), READONLY, NULL},
    {"root_path", T_OBJECT, offsetof(Exchange, root_path), READONLY, NULL},
    {"send", T_OBJECT, offsetof(Exchange, send), READONLY, NULL},
    {"outer", T_OBJECT, offsetof(Exchange, outer), READONLY, NULL},
    {"status", T_OBJECT, offsetof(Exchange, status), 0, NULL},
    {"completed", T_OBJECT, offsetof(Exchange, completed), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ExchangeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "platform_otel._asgi_speedups.Exchange",
    .tp_basicsize = sizeof(Exchange),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "One traced request: the send the application gets (see _asgi_speedups.c).",
    .tp_vectorcall_offset = offsetof(Exchange, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dealloc = (destructor)Exchange_dealloc,
    .tp_traverse = (traverseproc)Exchange_traverse,
    .tp_clear = (inquiry)Exchange_clear,
    .tp_members = Exchange_members,
};

/* begin(scope, send) -> Exchange: what ServerTelemetry._begin_py does. */
static PyObject *RequestPath_begin(RequestPath *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "begin() takes the scope and send");
        return NULL;
    }
    PyObject *scope = args[0], *send = args[1];
    if (!PyDict_CheckExact(scope)) return PyObject_Vectorcall(self->py_begin, args, 2, NULL);
    if (PyDict_SetItem(scope, self->scope_key, Py_True) < 0) return NULL;
    PyObject *root_path;
    if (truthy_or(scope, s_root_path, s_empty, &root_path) < 0) return NULL;
    Py_INCREF(root_path);
    /* uvicorn's send, whose last call runs outside the span (ServerTelemetry's module doc) */
    int isolate = 0;
    PyObject *owner = NULL;
    if (PyObject_GetOptionalAttr(send, s_self, &owner) < 0) goto error;
    if (owner != NULL) {
        PyObject *hit = PyDict_GetItemWithError(self->isolating, (PyObject *)Py_TYPE(owner));
        Py_DECREF(owner);
        if (hit == NULL) {
            if (PyErr_Occurred()) goto error;
            hit = PyObject_CallOneArg(self->isolates, send);
            if (hit == NULL) goto error;
            isolate = PyObject_IsTrue(hit);
            Py_DECREF(hit);
        } else {
            isolate = PyObject_IsTrue(hit);
        }
        if (isolate < 0) goto error;
    }
    Exchange *exchange = PyObject_GC_New(Exchange, &ExchangeType);
    if (exchange == NULL) goto error;
    exchange->vectorcall = Exchange_vectorcall;
    exchange->scope = Py_NewRef(scope);
    exchange->root_path = root_path;
    exchange->send = Py_NewRef(send);
    exchange->status = Py_NewRef(zero);
    exchange->completed = Py_NewRef(Py_None);
    exchange->final_send = Py_NewRef(self->final_send);
    exchange->started = NULL;
    exchange->outer = NULL;
    PyObject *started = RequestPath_start(self, &scope, 1);
    if (started == NULL) {
        exchange->outer = Py_NewRef(Py_None);
        exchange->started = Py_NewRef(Py_None);
        PyObject_GC_Track(exchange);
        Py_DECREF(exchange);
        return NULL;
    }
    exchange->started = started;
    PyObject *outer = Py_None;
    if (isolate && PyTuple_Check(started) && PyTuple_GET_SIZE(started) == 7)
        outer = PyTuple_GET_ITEM(started, 6);
    exchange->outer = Py_NewRef(outer);
    PyObject_GC_Track(exchange);
    return (PyObject *)exchange;
error:
    Py_DECREF(root_path);
    return NULL;
}

/* end(exchange, exc): ServerTelemetry._end_py, i.e. _finish with what the exchange noted. */
static PyObject *RequestPath_end(RequestPath *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "end() takes the exchange and the exception");
        return NULL;
    }
    if (Py_TYPE(args[0]) != &ExchangeType) return PyObject_Vectorcall(self->py_end, args, 2, NULL);
    Exchange *exchange = (Exchange *)args[0];
    PyObject *finish_args[6] = {exchange->scope,  exchange->started, exchange->root_path,
                                exchange->status, args[1],           exchange->completed};
    return RequestPath_finish(self, finish_args, 6);
}

/* -- the type --------------------------------------------------------------------------- */

static int RequestPath_traverse(RequestPath *self, visitproc visit, void *arg) {
#define VISIT(name) Py_VISIT(self->name);
    OBJECT_FIELDS(VISIT)
#undef VISIT
    return 0;
}

static int RequestPath_clear(RequestPath *self) {
#define CLEAR(name) Py_CLEAR(self->name);
    OBJECT_FIELDS(CLEAR)
#undef CLEAR
    return 0;
}

static void RequestPath_dealloc(RequestPath *self) {
    PyObject_GC_UnTrack(self);
    RequestPath_clear(self);
    PyMem_Free(self->bounds);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* RequestPath(**fields, max_attributes=int, bounds=tuple[float], always_exemplar=bool,
 * trace_exemplar=bool): every field of OBJECT_FIELDS is required. */
static int RequestPath_init(RequestPath *self, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) != 0 || kwargs == NULL) {
        PyErr_SetString(PyExc_TypeError, "RequestPath() takes keyword arguments only");
        return -1;
    }
    PyObject *v;
#define TAKE(name)                                                                   \
    v = PyDict_GetItemString(kwargs, #name);                                         \
    if (v == NULL) {                                                                 \
        PyErr_SetString(PyExc_TypeError, "RequestPath() missing argument '" #name "'"); \
        return -1;                                                                   \
    }                                                                                \
    Py_XSETREF(self->name, Py_NewRef(v));
    OBJECT_FIELDS(TAKE)
#undef TAKE
    if (!PyDict_Check(self->hosts) || !PyDict_Check(self->names) ||
        !PyDict_Check(self->metric_attrs) || !PyDict_Check(self->propagate_dict) ||
        !PyDict_Check(self->root_context) || !PyFrozenSet_Check(self->known_methods) ||
        !PyFrozenSet_Check(self->fields) || !PyContextVar_CheckExact(self->var) ||
        !PyType_Check(self->span_context_type) || !PyType_Check(self->lean_span_type) ||
        !PyType_Check(self->context_type)) {
        PyErr_SetString(PyExc_TypeError, "RequestPath(): an argument has the wrong type");
        return -1;
    }
    v = PyDict_GetItemString(kwargs, "max_attributes");
    self->max_attributes = v ? PyLong_AsSsize_t(v) : -1;
    if (self->max_attributes == -1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "RequestPath(): max_attributes must be an int >= 0");
        return -1;
    }
    v = PyDict_GetItemString(kwargs, "bounds");
    if (v == NULL || !PyTuple_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "RequestPath(): bounds must be a tuple of floats");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(v);
    double *bounds = PyMem_Malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (bounds == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        bounds[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(v, i));
        if (bounds[i] == -1.0 && PyErr_Occurred()) {
            PyMem_Free(bounds);
            return -1;
        }
    }
    PyMem_Free(self->bounds);
    self->bounds = bounds;
    self->nbounds = n;
    v = PyDict_GetItemString(kwargs, "always_exemplar");
    self->always_exemplar = v != NULL && PyObject_IsTrue(v) == 1;
    v = PyDict_GetItemString(kwargs, "trace_exemplar");
    self->trace_exemplar = v != NULL && PyObject_IsTrue(v) == 1;
    return 0;
}

static PyMethodDef RequestPath_methods[] = {
    {"begin", (PyCFunction)(void (*)(void))RequestPath_begin, METH_FASTCALL,
     "begin(scope, send) -> Exchange: ServerTelemetry._begin_py, in C."},
    {"end", (PyCFunction)(void (*)(void))RequestPath_end, METH_FASTCALL,
     "end(exchange, exc): ServerTelemetry._end_py, in C."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RequestPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "platform_otel._asgi_speedups.RequestPath",
    .tp_basicsize = sizeof(RequestPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The per-request path of one ServerTelemetry (see _asgi_speedups.c).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RequestPath_init,
    .tp_dealloc = (destructor)RequestPath_dealloc,
    .tp_traverse = (traverseproc)RequestPath_traverse,
    .tp_clear = (inquiry)RequestPath_clear,
    .tp_methods = RequestPath_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "platform_otel._asgi_speedups",
    "Optional C path for platform_otel.instrumentation._asgi (see _asgi_speedups.c).", -1, NULL,
    NULL, NULL, NULL, NULL,
};

static int intern_all(void) {
#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return -1;
    INTERN(s_method, "method") INTERN(s_scheme, "scheme") INTERN(s_headers, "headers")
    INTERN(s_path, "path") INTERN(s_http_version, "http_version") INTERN(s_client, "client")
    INTERN(s_route, "route") INTERN(s_root_path, "root_path")
    INTERN(s_path_format, "path_format") INTERN(s_http, "http") INTERN(s_slash, "/")
    INTERN(s_empty, "")
    INTERN(s_tracer, "_tracer") INTERN(s_name, "_name") INTERN(s_context, "_context")
    INTERN(s_parent, "_parent") INTERN(s_kind, "_kind") INTERN(s_attributes, "_attributes")
    INTERN(s_start_time, "_start_time") INTERN(s_resource, "_resource")
    INTERN(s_instrumentation_scope, "_instrumentation_scope") INTERN(s_end_time, "_end_time")
    INTERN(s_uncommon, "_uncommon") INTERN(s_tracer_config, "_tracer_config")
    INTERN(s_is_enabled, "is_enabled") INTERN(s_span_processors, "_span_processors")
    INTERN(s_on_start, "on_start") INTERN(s_parent_context, "parent_context")
    INTERN(s_textmap_global, "_HTTP_TEXT_FORMAT") INTERN(s_points, "_points")
    INTERN(s_lock, "_lock") INTERN(s_acquire, "acquire") INTERN(s_release, "release")
    INTERN(s_counts, "counts") INTERN(s_count, "count") INTERN(s_sum, "sum")
    INTERN(s_min, "min") INTERN(s_max, "max") INTERN(s_exemplars, "exemplars")
    INTERN(s_new_point, "_new_point") INTERN(s_record, "record")
    INTERN(s_set_name_and_scalars, "set_name_and_scalars") INTERN(s_end, "end")
    INTERN(s_c_span_message, "_c_span_message") INTERN(s_head_pair, "head_pair")
    INTERN(s_emit, "emit") INTERN(s_sdk_resource, "resource")
    INTERN(k_method, "http.request.method") INTERN(k_scheme, "url.scheme")
    INTERN(k_path, "url.path") INTERN(k_address, "server.address")
    INTERN(k_port, "server.port") INTERN(k_version, "network.protocol.version")
    INTERN(k_user_agent, "user_agent.original") INTERN(k_client, "client.address")
    INTERN(k_route, "http.route") INTERN(k_status, "http.response.status_code")
    INTERN(s_type, "type") INTERN(s_status, "status") INTERN(s_more_body, "more_body")
    INTERN(s_get, "get") INTERN(s_self, "__self__")
#undef INTERN
    if ((zero = PyLong_FromLong(0)) == NULL) return -1;
    if ((empty_tuple = PyTuple_New(0)) == NULL) return -1;
    if ((one = PyLong_FromLong(1)) == NULL) return -1;
    return 0;
}

PyMODINIT_FUNC PyInit__asgi_speedups(void) {
    if (intern_all() < 0) return NULL;
    if (PyType_Ready(&RequestPathType) < 0 || PyType_Ready(&ExchangeType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&RequestPathType);
    if (PyModule_AddObject(m, "RequestPath", (PyObject *)&RequestPathType) < 0) {
        Py_DECREF(&RequestPathType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
