/* connroute: deadlines of blocking connects; see deadline.h. */
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base.h"
#include "deadline.h"
#include "ownfd.h"
#include "thread.h"

#define MAX_TIMED 256
/* A fired deadline nobody disarmed (its connect was left by siglongjmp) is
 * freed this long after it fired. */
#define ORPHAN_NS 5000000000ull

struct timed {
	int used;
	int fired;
	int fd;
	uint32_t gen;
	uint64_t ino;
	uint64_t deadline_ns;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct timed tab[MAX_TIMED];
static _Atomic uint32_t wake_word;

/* Held for a few instructions, with every signal blocked: a handler can
 * neither deadlock on it nor siglongjmp out while it is held. */
static void lock(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, old);
	pthread_mutex_lock(&mu);
}

static void unlock(const sigset_t *old)
{
	pthread_mutex_unlock(&mu);
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

static int connecting(int fd)
{
	struct tcp_info ti;
	socklen_t tl = sizeof(ti);
	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
	       ti.tcpi_state == 2 /* SYN_SENT */;
}

static void *tmo_main(void *arg)
{
	(void)arg;
	for (;;) {
		sigset_t old;
		uint64_t now = cr_now_ns(), next = now + 1000000000ull;
		uint32_t seen = atomic_load(&wake_word);
		lock(&old);
		for (int i = 0; i < MAX_TIMED; i++) {
			struct timed *t = &tab[i];
			if (!t->used)
				continue;
			if (t->fired) {
				if (now - t->deadline_ns >= ORPHAN_NS)
					t->used = 0;
				continue;
			}
			if (now < t->deadline_ns) {
				if (t->deadline_ns < next)
					next = t->deadline_ns;
				continue;
			}
			t->fired = 1;
			if (cr_fd_inode(t->fd) == t->ino && connecting(t->fd))
				SAVE_ERRNO(shutdown(t->fd, SHUT_RDWR));
		}
		unlock(&old);
		uint64_t ns = next > now ? next - now : 0;
		struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
				      .tv_nsec = (long)(ns % 1000000000ull)};
		syscall(SYS_futex, &wake_word, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
	}
	return NULL;
}

static struct cr_thread tmo_thread = {
	.name = "connroute-tmo", .main = tmo_main, .stack = 64 * 1024};

long cr_deadline_arm(int fd, uint64_t ino, uint64_t deadline_ns)
{
	sigset_t old;
	long h = -1;
	if (!cr_thread_kick(&tmo_thread))
		return -1;
	lock(&old);
	for (int i = 0; i < MAX_TIMED; i++) {
		struct timed *t = &tab[i];
		if (t->used)
			continue;
		t->used = 1;
		t->fired = 0;
		t->fd = fd;
		t->ino = ino;
		t->deadline_ns = deadline_ns;
		t->gen++;
		h = (long)i | (long)t->gen << 16;
		break;
	}
	unlock(&old);
	if (h >= 0) {
		atomic_fetch_add(&wake_word, 1);
		SAVE_ERRNO(syscall(SYS_futex, &wake_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0));
	}
	return h;
}

int cr_deadline_disarm(long h)
{
	sigset_t old;
	int fired = 0;
	if (h < 0)
		return 0;
	struct timed *t = &tab[h & 0xffff];
	lock(&old);
	if (t->used && t->gen == (uint32_t)(h >> 16)) {
		fired = t->fired;
		t->used = 0;
	}
	unlock(&old);
	return fired;
}

void cr_deadline_atfork_child(void)
{
	pthread_mutex_init(&mu, NULL);
	for (int i = 0; i < MAX_TIMED; i++)
		tab[i].used = 0;
	cr_thread_atfork_child(&tmo_thread);
}
