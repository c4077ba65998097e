/* connroute: libcurl's easy interface. A known handle maps to its library
 * directly; otherwise the caller's libcurl is found by shim/curl_find.c.
 * The curl_multi_* hooks hand the app's multis to lib/curl/multi.c;
 * curl_global_cleanup closes the pools (docs/INTERNALS.md, "libcurl lanes"). */
#include <pthread.h>
#include <unwind.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "curl/lanes.h"
#include "curl_find.h"
#include "engine.h"
#include "shim.h"

static inline struct cr_curllib *lib_for(CURL *h, const void *ret)
{
	struct cr_curllib *lib = h ? cr_curl_lib_of(h) : NULL;
	return lib ? lib : cr_curl_find_caller(ret, NULL);
}

/* Inlined into each hook, so the frame is the hook's (docs/INTERNALS.md,
 * "Raw connect": the recursion guard). */
static inline __attribute__((always_inline)) int active(void)
{
	return atomic_load_explicit(&cr_state, memory_order_relaxed) == CR_ST_READY &&
	       !cr_guard_held(__builtin_frame_address(0));
}

/* The handle this thread is performing or cleaning up in our hooks, if any:
 * libcurl's own curl_multi_* calls from there (with the handle's private
 * multi) are none of the multi hooks' business. */
static __thread CURL *cur_h;
/* ... and its library and that library's functions: what libcurl's calls
 * on its private multi use (a few instructions a call: they are on every
 * easy perform's path). */
static __thread struct cr_curllib *cur_lib;
static __thread const struct cr_curlfns *cur_fns;

/* The one argument after the option of curl_easy_setopt / curl_multi_setopt,
 * read in the type its number says (curl.h's CURLOPTTYPE_*): a long, a
 * pointer (object and function options; for easy options also blobs, from
 * CURLOPTTYPE_BLOB on) or a curl_off_t. BLOB is 1 for easy options, 0 for
 * multi ones (multi.h has no blob type). Always inlined with a constant BLOB:
 * the setopt hooks are on every request's path. */
struct optarg {
	long l;
	void *p;
	curl_off_t o;
};

static inline __attribute__((always_inline)) int optarg_is_ptr(unsigned int opt, int blob)
{
	return opt >= CURLOPTTYPE_OBJECTPOINT &&
	       (opt < CURLOPTTYPE_OFF_T || (blob && opt >= CURLOPTTYPE_BLOB));
}

static inline __attribute__((always_inline)) void optarg_read(struct optarg *a, va_list *ap,
							      unsigned int opt, int blob)
{
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		a->l = va_arg(*ap, long);
	else if (optarg_is_ptr(opt, blob))
		a->p = va_arg(*ap, void *);
	else
		a->o = va_arg(*ap, curl_off_t);
}

/* FN(H, OPT, the argument in its own type). */
#define OPTARG_PASS(fn, h, opt, a, blob)                     \
	((opt) < CURLOPTTYPE_OBJECTPOINT ? fn(h, opt, (a).l) \
	 : optarg_is_ptr(opt, blob)      ? fn(h, opt, (a).p) \
					 : fn(h, opt, (a).o))

/* A hooked call that runs the app's callbacks may be left by a
 * longjmp/siglongjmp out of one (or out of a signal handler), or by
 * pthread_exit. glibc runs the cleanup buffers (_pthread_cleanup_push, the
 * old-style ones) of the frames such a jump or unwind leaves
 * (__pthread_cleanup_upto); a jump that stays inside the call (libcurl's
 * own, out of its DNS alarm) runs none. Weak: without them (glibc < 2.34
 * without libpthread) nothing is pushed. */
extern void _pthread_cleanup_push(struct _pthread_cleanup_buffer *b, void (*fn)(void *), void *arg)
	__attribute__((weak));
extern void _pthread_cleanup_pop(struct _pthread_cleanup_buffer *b, int execute)
	__attribute__((weak));

/* An exception (C++, Rust, any unwinding but glibc's forced one) thrown
 * through a hook runs no such buffer: left linked from the hook's dead
 * frame, the thread's next pthread_exit, cancellation or longjmp called
 * whatever the stack held there (a crash). So the hooks' calls are also
 * kept in a per-thread list, and a function that pushes one names the
 * personality below in its unwind info (HOOK_CALL_PERSONALITY): only
 * functions that push on every path that reaches libcurl (the innermost
 * call in the list is then the frame's), so the multi calls each have
 * their own (mx_*). The unwinder calls it for each such frame it leaves, innermost
 * first; it does what the buffer would have (the innermost call's
 * handler), unlinks the buffer and lets the unwinding go on (no landing
 * pad runs). A forced unwind (pthread_exit, cancellation) is glibc's: it
 * ran the buffer before. */
struct hook_call {
	struct hook_call *next;
	void (*left)(void *);
	int pushed; /* B is linked in glibc's list */
	struct _pthread_cleanup_buffer b;
};
static __thread struct hook_call *calls_top;

static inline __attribute__((always_inline)) void call_push(struct hook_call *c,
							    void (*left)(void *))
{
	c->pushed = 0;
	if (_pthread_cleanup_push != NULL) {
		c->left = left;
		c->next = calls_top;
		_pthread_cleanup_push(&c->b, left, c);
		c->pushed = 1;
		calls_top = c;
	}
}

/* Also from the handlers (maybe in a signal handler): stores only. */
static inline __attribute__((always_inline)) void call_unlink(struct hook_call *c)
{
	calls_top = c->next;
	c->pushed = 0;
}

static inline __attribute__((always_inline)) void call_pop(struct hook_call *c)
{
	if (c->pushed) {
		_pthread_cleanup_pop(&c->b, 0);
		call_unlink(c);
	}
}

/* The hook's frame gets unwind info naming the personality below (in the
 * CFI the compiler emits for it: x86-64 and others build with
 * asynchronous unwind tables). */
#define HOOK_CALL_PERSONALITY() __asm__ volatile(".cfi_personality 0x1b, cr_hooks_personality")

__attribute__((used)) _Unwind_Reason_Code cr_hooks_personality(int version, _Unwind_Action actions,
							       _Unwind_Exception_Class cls,
							       struct _Unwind_Exception *ex,
							       struct _Unwind_Context *ctx);
__attribute__((used)) _Unwind_Reason_Code cr_hooks_personality(int version, _Unwind_Action actions,
							       _Unwind_Exception_Class cls,
							       struct _Unwind_Exception *ex,
							       struct _Unwind_Context *ctx)
{
	struct hook_call *c = calls_top;
	if ((actions & _UA_CLEANUP_PHASE) && !(actions & _UA_FORCE_UNWIND) && c && c->pushed) {
		c->left(c); /* unlinks it from the list */
		_pthread_cleanup_pop(&c->b, 0);
	}
	return _URC_CONTINUE_UNWIND;
}

/* One curl_easy_perform in our hook, for its cleanup buffer. */
struct perform_call {
	struct hook_call hc; /* first: the handler's argument */
	struct cr_curl_pframe pf;
	CURL *outer_h;
	struct cr_curllib *outer_lib;
	const struct cr_curlfns *outer_fns;
	int routed; /* it set the guard and cur_h */
};

/* The perform was left (docs/INTERNALS.md, "libcurl lanes", left by a
 * jump). Stores only (maybe inside a signal handler): the guard, set
 * without a signal mask, would be found held by every later call from a
 * deeper frame (the thread's handles and transfers unrouted); cur_h would
 * make the app's calls on that handle look like libcurl's own; the count
 * would keep the pools from ever being closed; perform.c records what the
 * perform held (a unit, a share, a gauge, a config reference). */
static void perform_left(void *arg)
{
	struct perform_call *c = arg;
	call_unlink(&c->hc);
	atomic_fetch_sub_explicit(&cr_curl_performing, 1, memory_order_relaxed);
	if (!c->routed)
		return;
	cr_guard_clear();
	cur_h = c->outer_h;
	cur_lib = c->outer_lib;
	cur_fns = c->outer_fns;
	cr_curl_perform_left(&c->pf);
}

/* ------------------------------------------------------------------ hooks */

HOOK(CURL *, curl_easy_init, (void))
{
	int self = 0;
	struct cr_curllib *lib = cr_curl_find_caller(__builtin_return_address(0), &self);
	if (!lib)
		return NULL;
	cr_curl_left_check();
	/* libcurl's own handles (a connection cache's closing handle, made by
	 * curl_multi_init or curl_share_setopt) are libcurl's business: never a
	 * recycled handle, never one we keep records of (libcurl frees them
	 * without curl_easy_cleanup). */
	if (self || !active())
		return cr_curl_lib_fns(lib)->easy_init();
	return cr_curl_init(lib);
}

HOOK(CURLcode, curl_easy_setopt, (CURL * h, CURLoption opt, ...))
{
	va_list ap;
	struct optarg a = {0, NULL, 0};
	va_start(ap, opt);
	optarg_read(&a, &ap, opt, 1);
	va_end(ap);
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return CURLE_FAILED_INIT;
	/* Recorded inside our perform too (an app's callback setting an
	 * option): not the recursion guard's business, and what libcurl holds
	 * must stay known. */
	if (atomic_load_explicit(&cr_state, memory_order_relaxed) != CR_ST_READY) {
		const struct cr_curlfns *f = cr_curl_lib_fns(lib);
		return OPTARG_PASS(f->easy_setopt, h, opt, a, 1);
	}
	return cr_curl_setopt(lib, h, opt, a.p, a.l, a.o);
}

HOOK(CURLcode, curl_easy_perform, (CURL * h))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	CURLcode rc;
	if (!lib)
		return CURLE_FAILED_INIT;
	cr_curl_left_check();
	cr_curl_mx_left_check();
	/* Every perform counts, routed or not: the pools are never closed
	 * while one is in flight (lib.c). */
	atomic_fetch_add_explicit(&cr_curl_performing, 1, memory_order_relaxed);
	struct perform_call c = {.pf = CR_CURL_PFRAME0, cur_h, cur_lib, cur_fns, active()};
	HOOK_CALL_PERSONALITY();
	call_push(&c.hc, perform_left);
	if (!c.routed) {
		rc = cr_curl_lib_fns(lib)->easy_perform(h);
	} else {
		/* libcurl's own connect() calls are the lane's business already
		 * (socket options through the sockopt callback, limits per
		 * transfer): the raw connect hook stays out of them. */
		cur_h = h;
		cur_lib = lib;
		cur_fns = cr_curl_lib_fns(lib);
		cr_guard_set(__builtin_frame_address(0), 0);
		rc = cr_curl_perform_in(lib, h, &c.pf);
		cr_guard_clear();
		cur_h = c.outer_h;
		cur_lib = c.outer_lib;
		cur_fns = c.outer_fns;
		/* After the library's first perform: libcurl's global init (and
		 * its TLS library's exit handler) came first. */
		cr_curl_exit_arm(lib);
	}
	call_pop(&c.hc);
	atomic_fetch_sub_explicit(&cr_curl_performing, 1, memory_order_relaxed);
	return rc;
}

HOOK(void, curl_easy_cleanup, (CURL * h))
{
	if (!h)
		return;
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return;
	cr_curl_left_check();
	if (!active()) {
		cr_curl_lib_fns(lib)->easy_cleanup(h);
		return;
	}
	CURL *outer = cur_h;
	struct cr_curllib *outer_lib = cur_lib;
	const struct cr_curlfns *outer_fns = cur_fns;
	cur_h = h;
	cur_lib = lib;
	cur_fns = cr_curl_lib_fns(lib);
	cr_curl_cleanup(lib, h);
	cur_h = outer;
	cur_lib = outer_lib;
	cur_fns = outer_fns;
}

HOOK(void, curl_easy_reset, (CURL * h))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return;
	if (!active()) {
		cr_curl_lib_fns(lib)->easy_reset(h);
		return;
	}
	cr_curl_reset(lib, h);
}

HOOK(CURL *, curl_easy_duphandle, (CURL * h))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return NULL;
	if (!active())
		return cr_curl_lib_fns(lib)->easy_duphandle(h);
	return cr_curl_duphandle(lib, h);
}

/* The calls that observe a handle: a recycled handle's last life is never
 * seen, and a handle's parked share is never taken during them
 * (docs/INTERNALS.md, "libcurl lanes"). */
HOOK(CURLcode, curl_easy_getinfo, (CURL * h, CURLINFO info, ...))
{
	va_list ap;
	va_start(ap, info);
	void *arg = va_arg(ap, void *); /* every CURLINFO_* takes one pointer */
	va_end(ap);
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return CURLE_FAILED_INIT;
	if (!active())
		return cr_curl_lib_fns(lib)->easy_getinfo(h, info, arg);
	return cr_curl_getinfo(lib, h, info, arg);
}

HOOK(CURLcode, curl_easy_upkeep, (CURL * h))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return CURLE_FAILED_INIT;
	if (!active()) {
		const struct cr_curlfns *f = cr_curl_lib_fns(lib);
		return f->easy_upkeep ? f->easy_upkeep(h) : CURLE_NOT_BUILT_IN;
	}
	return cr_curl_upkeep(lib, h);
}

HOOK(CURLHcode, curl_easy_header,
     (CURL * h, const char *name, size_t index, unsigned int origin, int request,
      struct curl_header **hout))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return CURLHE_NOT_BUILT_IN;
	if (!active()) {
		const struct cr_curlfns *f = cr_curl_lib_fns(lib);
		return f->easy_header ? f->easy_header(h, name, index, origin, request, hout)
				      : CURLHE_NOT_BUILT_IN;
	}
	return cr_curl_header(lib, h, name, index, origin, request, hout);
}

HOOK(struct curl_header *, curl_easy_nextheader,
     (CURL * h, unsigned int origin, int request, struct curl_header *prev))
{
	struct cr_curllib *lib = lib_for(h, __builtin_return_address(0));
	if (!lib)
		return NULL;
	if (!active()) {
		const struct cr_curlfns *f = cr_curl_lib_fns(lib);
		return f->easy_nextheader ? f->easy_nextheader(h, origin, request, prev) : NULL;
	}
	return cr_curl_nextheader(lib, h, origin, request, prev);
}

/* ------------------------------------------------------------ multi handles
 *
 * Transfers the app adds to its multi handles run in lanes (lib/curl/multi.c,
 * docs/INTERNALS.md "libcurl lanes", multi transfers). A multi is known to
 * the engine once the app added a handle we know to it while READY; every
 * other multi (libcurl's private one inside our perform and cleanup hooks,
 * for the handle cur_h; one used before READY) passes through to its
 * libcurl: the performing handle's inside our hooks, else the caller's. */

static inline int multi_records(void)
{
	return atomic_load_explicit(&cr_state, memory_order_relaxed) == CR_ST_READY;
}

/* The libcurl of a multi we do not know. */
static inline struct cr_curllib *mlib(const void *ret)
{
	return cur_lib ? cur_lib : cr_curl_find_caller(ret, NULL);
}

/* No multi is known in the process and we are inside our perform: the call
 * is libcurl's own on the performing handle's private multi (or an app's
 * callback calling its own, still unknown multi: the same libcurl in
 * practice). */
#define PRIVATE_FAST()                                                                          \
	(__builtin_expect(!atomic_load_explicit(&cr_curl_mx_known, memory_order_relaxed), 1) && \
	 cur_fns)

/* A call on a known multi that runs the app's callbacks may be left by a
 * longjmp/siglongjmp out of one (or out of a signal handler), or by
 * pthread_exit. Ours (declared above, with the easy perform's) clears the
 * guard the call set (else a later call from a deeper frame finds it held:
 * the app's next handles and transfers would run outside their lane) and
 * tells multi.c (docs/INTERNALS.md, "Multi transfers", left by a longjmp). */

struct mx_call {
	struct hook_call hc; /* first: the handler's argument */
	struct cr_mx *x;
	int guard; /* this call set the guard */
};

static void mx_call_left(void *arg)
{
	struct mx_call *c = arg;
	call_unlink(&c->hc);
	if (c->guard)
		cr_guard_clear();
	cr_curl_mx_left(c->x);
}

/* libcurl's connects inside a known multi's transfers are the lane's
 * business (sockopt callback, limits per transfer): the raw connect hook
 * stays out, as inside an easy perform. Set (GUARD) only around the calls
 * that run transfers, and only if not set already (a nested call). */
#define MX_CALL(x_, guard_, call)                                               \
	({                                                                      \
		struct mx_call c_ = {.x = (x_), .guard = (guard_) && active()}; \
		HOOK_CALL_PERSONALITY();                                        \
		call_push(&c_.hc, mx_call_left);                                \
		if (c_.guard)                                                   \
			cr_guard_set(__builtin_frame_address(0), 0);            \
		__typeof__(call) r_ = (call);                                   \
		if (c_.guard)                                                   \
			cr_guard_clear();                                       \
		call_pop(&c_.hc);                                               \
		r_;                                                             \
	})
#define GUARDED(x_, call) MX_CALL(x_, 1, call)

/* Each pushes on every path (HOOK_CALL_PERSONALITY, above). */
static __attribute__((noinline, noclone)) CURLMcode mx_perform(struct cr_mx *x, int *running)
{
	return GUARDED(x, cr_curl_mx_perform(x, running));
}

static __attribute__((noinline, noclone)) CURLMcode mx_socket_action(struct cr_mx *x,
								     curl_socket_t s, int ev,
								     int *running)
{
	return GUARDED(x, cr_curl_mx_socket_action(x, s, ev, running));
}

static __attribute__((noinline, noclone)) CURLMcode mx_socket_all(struct cr_mx *x, int *running)
{
	return GUARDED(x, cr_curl_mx_socket_all(x, running));
}

static __attribute__((noinline, noclone)) CURLMcode mx_wait(struct cr_mx *x,
							    struct curl_waitfd *fds, unsigned n,
							    int timeout_ms, int *numfds, int poll)
{
	return MX_CALL(x, 0, cr_curl_mx_wait(x, fds, n, timeout_ms, numfds, poll));
}

static __attribute__((noinline)) CURLMcode add_handle_slow(CURLM *m, CURL *h, const void *ret)
{
	struct cr_curllib *lib = lib_for(h, ret);
	if (!lib)
		return CURLM_BAD_EASY_HANDLE;
	cr_curl_left_check();
	if (h != cur_h && active())
		return cr_curl_mx_add(lib, m, h);
	CURLMcode rc = cr_curl_lib_fns(lib)->multi_add_handle(m, h);
	if (rc == CURLM_OK && h != cur_h && multi_records())
		cr_curl_multi_added(m, h);
	return rc;
}

HOOK(CURLMcode, curl_multi_add_handle, (CURLM * m, CURL *h))
{
	if (h == cur_h && cur_fns) /* libcurl's own, inside our perform */
		return cur_fns->multi_add_handle(m, h);
	return add_handle_slow(m, h, __builtin_return_address(0));
}

static __attribute__((noinline)) CURLMcode remove_handle_slow(CURLM *m, CURL *h, const void *ret)
{
	struct cr_mx *x = h != cur_h ? cr_curl_mx_get(m) : NULL;
	if (x)
		return cr_curl_mx_remove(x, h);
	struct cr_curllib *lib = lib_for(h, ret);
	if (!lib)
		return CURLM_BAD_EASY_HANDLE;
	CURLMcode rc = cr_curl_lib_fns(lib)->multi_remove_handle(m, h);
	if (rc == CURLM_OK && h != cur_h && multi_records())
		cr_curl_multi_removed(m, h);
	return rc;
}

HOOK(CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL *h))
{
	if (h == cur_h && cur_fns) /* libcurl's own, inside our perform or cleanup */
		return cur_fns->multi_remove_handle(m, h);
	return remove_handle_slow(m, h, __builtin_return_address(0));
}

HOOK(CURLMcode, curl_multi_cleanup, (CURLM * m))
{
	struct cr_mx *x = cr_curl_mx_get(m);
	CURLMcode rc;
	if (x) {
		rc = cr_curl_mx_cleanup(x);
	} else {
		struct cr_curllib *lib = cr_curl_find_caller(__builtin_return_address(0), NULL);
		if (!lib)
			return CURLM_BAD_HANDLE;
		rc = cr_curl_lib_fns(lib)->multi_cleanup(m);
	}
	/* libcurl leaves the easy handles alone, detached. Inside our hooks
	 * this is libcurl closing a private multi: no handle of ours is
	 * recorded in one. (An app's multi cleaned up from a callback of our
	 * perform leaves records behind: its handles are then never recycled.) */
	if (rc == CURLM_OK && !cur_h && multi_records())
		cr_curl_multi_gone(m);
	return rc;
}

static __attribute__((noinline)) CURLMcode setopt_slow(CURLM *m, CURLMoption opt, long l, void *p,
						       curl_off_t o, const void *ret)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	struct cr_curllib *lib = x ? cr_curl_mx_lib(x) : mlib(ret);
	if (!lib)
		return CURLM_BAD_HANDLE;
	/* The app's timer callback is wrapped (the queue's checks). */
	if ((opt == CURLMOPT_TIMERFUNCTION || opt == CURLMOPT_TIMERDATA) && !cur_h && active())
		return cr_curl_mx_setopt(lib, m, opt, p);
	const struct cr_curlfns *f = cr_curl_lib_fns(lib);
	struct optarg a = {l, p, o};
	return OPTARG_PASS(f->multi_setopt, m, opt, a, 0);
}

HOOK(CURLMcode, curl_multi_setopt, (CURLM * m, CURLMoption opt, ...))
{
	va_list ap;
	struct optarg a = {0, NULL, 0};
	va_start(ap, opt);
	optarg_read(&a, &ap, opt, 0);
	va_end(ap);
	/* libcurl's own setopt on its private multi, inside our perform */
	if (PRIVATE_FAST() && opt < CURLOPTTYPE_OBJECTPOINT)
		return cur_fns->multi_setopt(m, opt, a.l);
	return setopt_slow(m, opt, a.l, a.p, a.o, __builtin_return_address(0));
}

static __attribute__((noinline)) CURLMcode perform_slow(CURLM *m, int *running, const void *ret)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return mx_perform(x, running);
	struct cr_curllib *lib = mlib(ret);
	return lib ? cr_curl_lib_fns(lib)->multi_perform(m, running) : CURLM_BAD_HANDLE;
}

HOOK(CURLMcode, curl_multi_perform, (CURLM * m, int *running))
{
	if (PRIVATE_FAST())
		return cur_fns->multi_perform(m, running);
	return perform_slow(m, running, __builtin_return_address(0));
}

static __attribute__((noinline)) CURLMcode socket_action_slow(CURLM *m, curl_socket_t s, int ev,
							      int *running, const void *ret)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return mx_socket_action(x, s, ev, running);
	struct cr_curllib *lib = mlib(ret);
	return lib ? cr_curl_lib_fns(lib)->multi_socket_action(m, s, ev, running)
		   : CURLM_BAD_HANDLE;
}

HOOK(CURLMcode, curl_multi_socket_action, (CURLM * m, curl_socket_t s, int ev, int *running))
{
	if (PRIVATE_FAST())
		return cur_fns->multi_socket_action(m, s, ev, running);
	return socket_action_slow(m, s, ev, running, __builtin_return_address(0));
}

HOOK(CURLMcode, curl_multi_socket_all, (CURLM * m, int *running))
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return mx_socket_all(x, running);
	struct cr_curllib *lib = mlib(__builtin_return_address(0));
	const struct cr_curlfns *f = lib ? cr_curl_lib_fns(lib) : NULL;
	return f && f->multi_socket_all ? f->multi_socket_all(m, running) : CURLM_BAD_HANDLE;
}

/* Deprecated: curl_multi_socket_action with no event bits. curl/multi.h
 * makes the name a macro for that; programs built before still call it. */
#undef curl_multi_socket
HOOK(CURLMcode, curl_multi_socket, (CURLM * m, curl_socket_t s, int *running))
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return mx_socket_action(x, s, 0, running);
	struct cr_curllib *lib = mlib(__builtin_return_address(0));
	const struct cr_curlfns *f = lib ? cr_curl_lib_fns(lib) : NULL;
	return f && f->multi_socket ? f->multi_socket(m, s, running) : CURLM_BAD_HANDLE;
}

static __attribute__((noinline)) CURLMcode wait_slow(CURLM *m, struct curl_waitfd *fds,
						     unsigned int n, int timeout_ms, int *numfds,
						     const void *ret)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return mx_wait(x, fds, n, timeout_ms, numfds, 0);
	struct cr_curllib *lib = mlib(ret);
	return lib ? cr_curl_lib_fns(lib)->multi_wait(m, fds, n, timeout_ms, numfds)
		   : CURLM_BAD_HANDLE;
}

HOOK(CURLMcode, curl_multi_wait,
     (CURLM * m, struct curl_waitfd *fds, unsigned int n, int timeout_ms, int *numfds))
{
	if (PRIVATE_FAST())
		return cur_fns->multi_wait(m, fds, n, timeout_ms, numfds);
	return wait_slow(m, fds, n, timeout_ms, numfds, __builtin_return_address(0));
}

static __attribute__((noinline)) CURLMcode poll_slow(CURLM *m, struct curl_waitfd *fds,
						     unsigned int n, int timeout_ms, int *numfds,
						     const void *ret)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return mx_wait(x, fds, n, timeout_ms, numfds, 1);
	struct cr_curllib *lib = mlib(ret);
	const struct cr_curlfns *f = lib ? cr_curl_lib_fns(lib) : NULL;
	return f && f->multi_poll ? f->multi_poll(m, fds, n, timeout_ms, numfds) : CURLM_BAD_HANDLE;
}

HOOK(CURLMcode, curl_multi_poll,
     (CURLM * m, struct curl_waitfd *fds, unsigned int n, int timeout_ms, int *numfds))
{
	if (PRIVATE_FAST())
		return cur_fns->multi_poll ? cur_fns->multi_poll(m, fds, n, timeout_ms, numfds)
					   : CURLM_BAD_HANDLE;
	return poll_slow(m, fds, n, timeout_ms, numfds, __builtin_return_address(0));
}

static __attribute__((noinline)) CURLMcode timeout_slow(CURLM *m, long *ms, const void *ret)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return cr_curl_mx_timeout(x, ms);
	struct cr_curllib *lib = mlib(ret);
	return lib ? cr_curl_lib_fns(lib)->multi_timeout(m, ms) : CURLM_BAD_HANDLE;
}

HOOK(CURLMcode, curl_multi_timeout, (CURLM * m, long *ms))
{
	if (PRIVATE_FAST())
		return cur_fns->multi_timeout(m, ms);
	return timeout_slow(m, ms, __builtin_return_address(0));
}

static __attribute__((noinline)) CURLMsg *info_read_slow(CURLM *m, int *msgs_in_queue,
							 const void *ret)
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return cr_curl_mx_info_read(x, msgs_in_queue);
	struct cr_curllib *lib = mlib(ret);
	return lib ? cr_curl_lib_fns(lib)->multi_info_read(m, msgs_in_queue) : NULL;
}

HOOK(CURLMsg *, curl_multi_info_read, (CURLM * m, int *msgs_in_queue))
{
	if (PRIVATE_FAST())
		return cur_fns->multi_info_read(m, msgs_in_queue);
	return info_read_slow(m, msgs_in_queue, __builtin_return_address(0));
}

HOOK(CURLMcode, curl_multi_fdset, (CURLM * m, fd_set *r, fd_set *w, fd_set *ex, int *max_fd))
{
	struct cr_mx *x = cr_curl_mx_get(m);
	if (x)
		return cr_curl_mx_fdset(x, r, w, ex, max_fd);
	struct cr_curllib *lib = mlib(__builtin_return_address(0));
	return lib ? cr_curl_lib_fns(lib)->multi_fdset(m, r, w, ex, max_fd) : CURLM_BAD_HANDLE;
}

/* The app is done with libcurl: the pools of its libcurl are closed first,
 * through libcurl, as the app's own cleanups would have closed them. */
HOOK(void, curl_global_cleanup, (void))
{
	struct cr_curllib *lib = cr_curl_find_caller(__builtin_return_address(0), NULL);
	if (!lib)
		return;
	cr_curl_left_check();
	if (active())
		cr_curl_drain(lib);
	cr_curl_lib_fns(lib)->global_cleanup();
}
