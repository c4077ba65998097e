/* Unit tests of lib/trust.c: which config files a process may read, as root and not.
 *
 * Every case builds its files in a fresh mkdtemp directory (0700, owned by whoever runs the
 * tests) and removes them afterwards. Cases about root's rules skip when not run as root;
 * cases about an unprivileged user fork a child that drops to uid/gid 65534 and reports
 * through its exit status (so the parent, still root, can clean up). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sys.h"
#include "trust.h"

static char dir[256];
static char why[512];

static void mk(void)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp || strlen(tmp) > 200)
		tmp = "/tmp";
	snprintf(dir, sizeof(dir), "%s/cr-trust-XXXXXX", tmp);
	cr_assert_not_null(mkdtemp(dir));
	why[0] = '\0';
}

/* The tree is ours, small, and its name is mkdtemp's (no quotes): rm -rf is simplest. */
static void rm(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	int rc = system(cmd);
	(void)rc;
}

static const char *path(const char *name)
{
	static char p[32][1024];   /* results stay valid for the next 31 calls */
	static int i;
	char *b = p[i++ % 32];
	snprintf(b, 1024, "%s/%s", dir, name);
	return b;
}

static const char *file(const char *name, mode_t mode)
{
	const char *p = path(name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
	cr_assert_eq(write(fd, "[lane default]\n", 15), 15);
	close(fd);
	cr_assert_eq(chmod(p, mode), 0);
	return p;
}

static const char *subdir(const char *name, mode_t mode)
{
	const char *p = path(name);
	cr_assert_eq(mkdir(p, 0700), 0, "%s: %s", p, strerror(errno));
	cr_assert_eq(chmod(p, mode), 0);
	return p;
}

static void need_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root (the ownership and mode rules apply to root only)");
}

#define TRUSTED(p) cr_expect_eq(cr_config_trusted((p), why, sizeof(why)), 0, "%s: %s", (p), why)
#define REFUSED(p, needle)                                                                  \
	do {                                                                                \
		cr_expect_eq(cr_config_trusted((p), why, sizeof(why)), -1, "%s was trusted", (p)); \
		cr_expect(strstr(why, (needle)) != NULL, "'%s' does not say '%s'", why, (needle)); \
	} while (0)

TestSuite(trust, .init = mk, .fini = rm);

/* ---------------------------------------------------------------- everyone */

Test(trust, plain_private_file_is_trusted)
{
	TRUSTED(file("c.conf", 0644));
	TRUSTED(file("d.conf", 0600));
}

Test(trust, missing_file_and_empty_path)
{
	REFUSED(path("nope.conf"), "No such file");
	REFUSED(path("nope.conf"), "check CONNROUTE_CONFIG");
	REFUSED("", "no config file given");
	cr_expect_eq(cr_config_trusted(NULL, why, sizeof(why)), -1);
}

Test(trust, non_regular_files_are_refused)
{
	cr_assert_eq(mkfifo(path("fifo"), 0600), 0);
	REFUSED(path("fifo"), "a FIFO");
	REFUSED(dir, "a directory");
	REFUSED("/dev/null", "a character device");
	REFUSED("/", "a directory");
	REFUSED(path("."), "a directory");
}

Test(trust, fifo_is_refused_without_blocking)
{
	/* opening a FIFO for reading blocks until a writer comes: the check must not */
	cr_assert_eq(mkfifo(path("fifo"), 0600), 0);
	alarm(5);
	REFUSED(path("fifo"), "FIFO");
	alarm(0);
}

Test(trust, symlink_in_world_writable_dir_is_refused_sticky_or_not)
{
	const char *target = file("real.conf", 0644);
	const char *sticky = subdir("sticky", 01777);
	const char *open_dir = subdir("open", 0777);
	char l1[600], l2[600];
	snprintf(l1, sizeof(l1), "%s/link.conf", sticky);
	snprintf(l2, sizeof(l2), "%s/link.conf", open_dir);
	cr_assert_eq(symlink(target, l1), 0);
	cr_assert_eq(symlink(target, l2), 0);
	REFUSED(l1, "is a symbolic link in the world-writable directory");
	REFUSED(l1, "point CONNROUTE_CONFIG at the file itself");
	/* as root the 0777 directory itself is refused first (see root_refuses_replaceable_...) */
	REFUSED(l2, "writable");
	/* the same link in a private directory is fine */
	cr_assert_eq(symlink(target, path("ok.conf")), 0);
	TRUSTED(path("ok.conf"));
}

Test(trust, link_chains_and_directory_links_are_followed_and_checked)
{
	const char *target = file("real.conf", 0644);
	const char *sticky = subdir("sticky", 01777);
	char bad[600];
	snprintf(bad, sizeof(bad), "%s/hop", sticky);
	cr_assert_eq(symlink(target, bad), 0);
	/* a private link whose target is a link in a world-writable directory */
	cr_assert_eq(symlink(bad, path("chain.conf")), 0);
	REFUSED(path("chain.conf"), "world-writable directory");
	/* a relative link to a directory, then the file inside it */
	subdir("etc", 0755);
	file("etc/conn.conf", 0644);
	cr_assert_eq(symlink("etc", path("etclink")), 0);
	TRUSTED(path("etclink/conn.conf"));
	TRUSTED(path("etclink/../etc/./conn.conf"));
	/* a directory link living in a world-writable directory */
	char dl[600], via[700];
	snprintf(dl, sizeof(dl), "%s/dirlink", sticky);
	cr_assert_eq(symlink(path("etc"), dl), 0);
	snprintf(via, sizeof(via), "%s/conn.conf", dl);
	REFUSED(via, "world-writable directory");
}

Test(trust, link_loops_end)
{
	cr_assert_eq(symlink(path("b"), path("a")), 0);
	cr_assert_eq(symlink(path("a"), path("b")), 0);
	REFUSED(path("a"), "more than 40 symbolic links");
}

Test(trust, a_file_component_in_the_middle)
{
	file("f", 0644);
	REFUSED(path("f/x.conf"), "is not a directory");
}

Test(trust, relative_paths_resolve_from_the_cwd)
{
	file("rel.conf", 0644);
	char old[PATH_MAX];
	cr_assert_not_null(getcwd(old, sizeof(old)));
	cr_assert_eq(chdir(dir), 0);
	TRUSTED("rel.conf");
	TRUSTED("./rel.conf");
	REFUSED("missing.conf", "No such file");
	cr_assert_eq(chdir(old), 0);
}

Test(trust, long_paths_are_refused)
{
	static char p[PATH_MAX + 10];
	memset(p, 'a', sizeof(p) - 1);
	p[0] = '/';
	p[sizeof(p) - 1] = '\0';
	REFUSED(p, "longer than");
}

Test(trust, messages_are_one_line_and_bounded)
{
	/* a hostile name: newlines and escapes must not forge log lines */
	const char *p = path("bad\nname\x1b[31m.conf");
	REFUSED(p, "No such file");
	cr_expect(strchr(why, '\n') == NULL, "%s", why);
	cr_expect(strchr(why, '\x1b') == NULL, "%s", why);
	/* tiny and absent buffers */
	char small[8];
	cr_expect_eq(cr_config_trusted(p, small, sizeof(small)), -1);
	cr_expect_eq(strlen(small), 7u);
	cr_expect_eq(cr_config_trusted(p, small, 1), -1);
	cr_expect_eq(small[0], '\0');
	cr_expect_eq(cr_config_trusted(p, NULL, 0), -1);
	/* a long path is cut in the message */
	char longname[300];
	memset(longname, 'z', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	REFUSED(path(longname), "...");
	cr_expect_lt(strlen(why), 500u);
}

Test(trust, errno_is_preserved)
{
	errno = 1234;
	cr_config_trusted(path("nope"), why, sizeof(why));
	cr_expect_eq(errno, 1234);
	errno = 4321;
	cr_config_trusted(file("x.conf", 0644), why, sizeof(why));
	cr_expect_eq(errno, 4321);
}

Test(trust, open_trusted_returns_the_checked_file)
{
	const char *p = file("c.conf", 0644);
	int fd = cr_config_open_trusted(p, why, sizeof(why));
	cr_assert_geq(fd, 0, "%s", why);
	struct stat a, b;
	cr_assert_eq(fstat(fd, &a), 0);
	cr_assert_eq(stat(p, &b), 0);
	cr_expect_eq(a.st_ino, b.st_ino);
	cr_expect_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "blocking reads");
	cr_expect(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	char buf[32] = {0};
	cr_expect_eq(read(fd, buf, sizeof(buf) - 1), 15);
	cr_expect_str_eq(buf, "[lane default]\n");
	cr_expect_eq(cr_sys_close(fd), 0);
	cr_expect_eq(cr_config_open_trusted(path("nope"), why, sizeof(why)), -1);
}

/* ---------------------------------------------------------------- root */

Test(trust, root_refuses_world_writable_file)
{
	need_root();
	const char *p = file("ww.conf", 0666);
	REFUSED(p, "writable by every user (mode 0666)");
	REFUSED(p, "chmod o-w");
}

Test(trust, root_refuses_group_writable_unless_group_root)
{
	need_root();
	const char *p = file("gw.conf", 0664);
	cr_assert_eq(chown(p, 0, 0), 0);
	TRUSTED(p);
	cr_assert_eq(chown(p, 0, 1000), 0);
	REFUSED(p, "writable by group 1000");
	REFUSED(p, "chmod g-w");
}

Test(trust, root_refuses_file_of_another_user)
{
	need_root();
	const char *p = file("other.conf", 0644);
	cr_assert_eq(chown(p, 65534, 65534), 0);
	REFUSED(p, "owned by uid 65534, not root");
	REFUSED(p, "chown root");
	/* a group that is not root may own it, as long as it cannot write */
	cr_assert_eq(chown(p, 0, 65534), 0);
	TRUSTED(p);
}

Test(trust, root_refuses_replaceable_directories)
{
	need_root();
	/* world-writable without sticky: anyone can rename the file away */
	subdir("open", 0777);
	const char *p = file("open/c.conf", 0644);
	REFUSED(p, "is writable by every user (mode 0777), who could replace the file");
	/* sticky (like /tmp): only the file's owner (root) can replace it */
	subdir("sticky", 01777);
	TRUSTED(file("sticky/c.conf", 0644));
	/* group-writable by a non-root group */
	const char *g = subdir("grp", 0775);
	cr_assert_eq(chown(g, 0, 1000), 0);
	REFUSED(file("grp/c.conf", 0644), "writable by group 1000");
	/* owned by another user (who can replace anything in it) */
	const char *o = subdir("home", 0755);
	cr_assert_eq(chown(o, 65534, 65534), 0);
	REFUSED(file("home/c.conf", 0644), "is owned by uid 65534");
	/* ... also further up the path */
	subdir("home/sub", 0755);
	REFUSED(file("home/sub/c.conf", 0644), "is owned by uid 65534");
}

/* ---------------------------------------------------------------- not root */

/* Runs cr_config_trusted(p) as uid/gid 65534 in a child: 0 trusted, 1 refused, else error. */
static int as_nobody(const char *p, const char *needle)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
		    setresuid(65534, 65534, 65534) != 0)
			_exit(3);
		char w[512];
		int rc = cr_config_trusted(p, w, sizeof(w));
		if (rc == 0)
			_exit(0);
		_exit(needle && !strstr(w, needle) ? 2 : 1);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(trust, unprivileged_users_keep_link_and_type_rules_only)
{
	need_root();                 /* to become nobody */
	cr_assert_eq(chmod(dir, 0755), 0);
	const char *ww = file("ww.conf", 0666);
	cr_assert_eq(chown(ww, 0, 0), 0);
	cr_expect_eq(as_nobody(ww, NULL), 0, "a world-writable file is the user's own business");
	cr_expect_eq(as_nobody(file("mine.conf", 0644), NULL), 0);
	const char *sticky = subdir("sticky", 01777);
	char l[600];
	snprintf(l, sizeof(l), "%s/link.conf", sticky);
	cr_assert_eq(symlink(ww, l), 0);
	cr_expect_eq(as_nobody(l, "world-writable directory"), 1, "links in /tmp-like dirs: never");
	cr_assert_eq(mkfifo(path("fifo"), 0666), 0);
	cr_expect_eq(as_nobody(path("fifo"), "FIFO"), 1);
}
