/* connroute: may the config file be trusted?
 *
 * A config steers every connection of the host process (source address, SO_MARK, timeouts,
 * which pool a request reuses), so whoever can write the file, or swap the path under it,
 * steers the process. Before the engine reads CONNROUTE_CONFIG (at init and on every
 * reload) it asks here; a refusal is one line "PATH: problem; fix" and the process runs
 * unrouted (or stops, under CONNROUTE_STRICT=1), exactly like a config with an error.
 *
 * The path is resolved component by component with lstat/readlink (never realpath, which
 * would follow links without looking at them), from "/" (a relative path is taken from the
 * current directory, which getcwd gives without links). Refused, for every user:
 *   - a symbolic link, anywhere on the path or in a link's target, that lives in a
 *     world-writable directory, sticky or not (/tmp/conf -> ...): whoever planted the name
 *     first owns it; point CONNROUTE_CONFIG at the file itself;
 *   - more than 40 links, a path longer than PATH_MAX, a component that is not a directory;
 *   - a final file that is not a regular file (FIFO: opening it would block the host at
 *     init; device, socket, directory).
 * Refused only when running as root (geteuid() == 0), where the checks of OpenSSH's
 * StrictModes apply:
 *   - the file is writable by others (S_IWOTH), or by its group when that group is not
 *     root (gid != 0), or is owned by a user other than root;
 *   - a directory on the resolved path (from "/" to the file's own) is owned by a user
 *     other than root, or is writable by others or by a non-root group without the sticky
 *     bit (anyone could rename the file away and put another in its place). A sticky
 *     world-writable directory such as /tmp is fine: only the owner of an entry can
 *     replace it there, and that owner is checked at the next component.
 * The final component is opened with O_NOFOLLOW|O_NONBLOCK and checked with fstat (the same
 * inode as the lstat), so it cannot be swapped for a link or a FIFO in between.
 *
 * Names are never looked up (getpwuid could dlopen NSS modules inside the host): uids and
 * gids are printed as numbers. The path in messages is cut at 200 bytes and control
 * characters are shown as '?', so a hostile path cannot forge log lines. errno is left as
 * it was. */
#ifndef CR_TRUST_H
#define CR_TRUST_H

#include <stddef.h>
#include <sys/types.h>

/* The config file used when CONNROUTE_CONFIG is unset (docs/config.md, "Which file"): only
 * when it exists and passes these rules. The test build moves it (-DCONNROUTE_SYSCONF). */
#ifndef CONNROUTE_SYSCONF
#define CONNROUTE_SYSCONF "/etc/connroute.conf"
#endif

/* Where a path came from: only the fixes suggested in the message differ. */
enum cr_trust_origin {
	CR_TRUST_ENV,     /* CONNROUTE_CONFIG */
	CR_TRUST_ARG,     /* a command line (connroute check FILE) */
	CR_TRUST_SYSCONF, /* the system default, /etc/connroute.conf */
};

/* 0: the file may be read. -1: refused; WHY (N bytes, may be NULL/0) gets one line
 * "PATH: problem; fix" without a trailing newline. */
int cr_config_trusted(const char *path, char *why, size_t n);

/* Same checks; on success returns an O_RDONLY|O_CLOEXEC descriptor of exactly the file that
 * was checked (read the config from it to close the window between check and open), -1 on
 * refusal. Close it with cr_sys_close (close() is interposed by the shim). */
int cr_config_open_trusted(const char *path, char *why, size_t n);

/* The same rules as judged for a process whose effective uid is EUID (0: the root rules
 * apply), the fixes worded for ORIGIN. `connroute check` uses it so that a file it calls
 * fine is one the shim reads, for the user the service runs as. */
int cr_config_open_trusted_as(const char *path, uid_t euid, int origin, char *why, size_t n);
/* The same, without keeping the descriptor: 0 or -1. */
int cr_config_trusted_as(const char *path, uid_t euid, int origin, char *why, size_t n);
/* The same walk for a directory that will hold files connroute writes (the access log,
 * docs/access-log.md): every rule above for the directories on the path, the last one
 * included; the final component must be a directory. Returns an O_RDONLY|O_DIRECTORY|
 * O_CLOEXEC descriptor of exactly the directory checked (create files in it with openat
 * and O_NOFOLLOW), or -1 with WHY as above. SETTING names what gave the path in messages
 * ("access_log"). */
int cr_dir_open_trusted(const char *path, const char *setting, char *why, size_t n);

#endif
