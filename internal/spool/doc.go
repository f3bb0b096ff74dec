// Package spool is the durable queue: a message is on disk, complete and
// fsynced, before anyone is told it was accepted, and it leaves the disk
// only once it has been delivered or moved aside for the operator.
//
// The package is Linux only: it relies on flock(2), O_NOFOLLOW and
// renameat(2) from package syscall.
//
// # Files
//
// One directory, Dir, holds the queue. A message is two files named after
// its id:
//
//	<ID>.msg             the message bytes exactly as they go on the wire
//	                     (CRLF line endings, before dot-stuffing); never
//	                     rewritten once committed, so it carries the lock
//	<ID>.env             the envelope, JSON (below); replaced as a whole on
//	                     every update
//	tmp-<ID>-<R>         a file being written: the data until Commit, or a
//	                     new envelope until it is renamed into place
//	failed/<ID>.msg      a message that can neither be delivered nor bounced,
//	failed/<ID>.env      kept for the operator; the queue never reads failed/
//
// An id is 16 characters of Crockford base32 (0-9 A-Z without I L O U): a
// 48-bit Unix time in milliseconds followed by 32 random bits, so ids sort
// by creation time. Within one [Spool], ids made in the same millisecond
// count up from the first one's random part, so they sort in creation order
// too. <R> is 8 more random characters. Other names in Dir are not the
// queue's: they are ignored and never removed.
//
// Files are created with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600,
// directories with mode 0700, set explicitly rather than left to the umask.
// A shared spool, whose directory gives its group rwx (the setgid install
// makes it root:relaymail 0770), gets 0660 and 0770: the processes of every
// user run with that group, and each must read, lock and update every
// message (a 0600 file would belong to the www-data or cron user who
// queued it alone).
// Every open of a spool file uses O_NOFOLLOW, and failed/ is opened with
// O_NOFOLLOW too: a symbolic link planted in the spool is refused, never
// followed.
//
// # Envelope
//
// The envelope is one JSON object (see [Envelope] for the fields), written
// by [Encode] on one line:
//
//	{"version":1,"id":"01JD2K7Q5W3N8X4Z","from":"cron@example.com",
//	 "recipients":[{"addr":"root@example.com","state":"pending"}],
//	 "size":1234,"created":"2024-11-20T10:00:00Z","attempts":0,
//	 "next_attempt":"0001-01-01T00:00:00Z","uid":33,"user":"www-data"}
//
// [Decode] is strict: version, id, from, recipients, size, created,
// attempts, next_attempt and uid must be present and not null, each
// recipient needs addr and state, key names match exactly, unknown keys and
// trailing data are refused, addresses must pass [address.Check] (no CR, LF,
// NUL or other control characters), free text must be one line, and
// enumerations (state, body, ret, error_mode, notify) take only their known
// values. Times are stored in UTC. Decode and Encode apply the same rules,
// so whatever Decode accepts, Encode writes back unchanged.
//
// # Versions
//
// The envelope carries a version, now 1. Any change to the fields bumps it.
// A reader refuses versions it does not know: List reports such an envelope
// and leaves both files alone, and Cleanup never removes the data of a
// message whose envelope exists, readable or not, so an older binary
// running beside a newer one loses nothing. A newer binary reads every older
// version and writes the current one back on its next update.
//
// # Commit
//
// [Spool.Create] opens tmp-<ID>-<R> and locks it; the message is streamed
// into it. [Writer.Commit] then:
//
//  1. flushes the data file, writes the envelope to a second temporary
//     file, and fsyncs both (at once);
//  2. links the data to <ID>.msg and then the envelope to <ID>.env, each
//     failing rather than replace an existing file;
//  3. removes both temporary names and fsyncs Dir.
//
// The envelope's presence is the commit point: a message whose <ID>.env
// exists is complete, and only such messages are listed. Data without an
// envelope is a message still being written or one whose sender died.
// When any step fails, Commit removes what it wrote, envelope first, and
// returns an error carrying [sysexits.TempFail] or [sysexits.CantCreat].
//
// That is two fsync waits, the least that makes a new name durable: the
// contents, then the directory. The order of the two links is what other
// processes rely on; the single directory fsync is what the sender relies
// on, since Commit returns only after it.
//
// # Locking
//
// A message being written, delivered, updated or moved is locked with
// flock(LOCK_EX|LOCK_NB) on its data file (the temporary file while it is
// written; the lock follows the file when it is linked to <ID>.msg, and is
// held until the envelope is in place). The data file is never replaced,
// unlike the envelope, so the lock always guards the same file. flock locks
// belong to an open file description: two opens in one process exclude each
// other just as two processes do, and the kernel drops the lock of a
// process that dies. [Spool.List] and [Spool.Find] take no lock; envelope
// updates are atomic renames, so they see the old envelope or the new one.
//
// # Crashes
//
// What a crash (of the process or the machine) at each step leaves, and
// what recovers it:
//
//   - while writing, or before Commit's first link: tmp-<ID>-<R>, unlocked.
//     Cleanup removes it once it is older than its threshold.
//   - between linking <ID>.msg and placing <ID>.env: <ID>.msg, perhaps
//     tmp-<ID>-<R> as a second name of it, perhaps the envelope's temporary
//     file. Nothing is listed: the sender was not told the message was
//     accepted. Cleanup removes the data without envelope, and the
//     temporary files.
//   - after <ID>.env is linked, before Commit's directory fsync: a process
//     crash leaves a committed message, which will be delivered, though
//     the sender was not told (it may submit it again: a duplicate, never
//     a loss). A power loss may keep any subset of the four name changes,
//     since nothing orders them on disk before the fsync, so it may also
//     leave <ID>.env without <ID>.msg: the sender was not told, the
//     message cannot be sent, and Cleanup removes that envelope (List
//     reports it until then).
//   - during [Item.Update]: the old envelope, or the new one, and perhaps
//     the new one's temporary file, which Cleanup removes. A power loss
//     before the directory fsync may bring back the old one: a recipient
//     recorded as sent may be sent again.
//   - during or after [Item.Remove], which removes the envelope and then
//     the data without fsyncing Dir: a process crash leaves <ID>.msg
//     without envelope, removed by Cleanup. A power loss within the
//     writeback interval may bring back both files (the message is sent
//     again), or the envelope alone, which Cleanup removes.
//   - during [Item.Fail], which moves the envelope to failed/ first and then
//     the data: failed/<ID>.env, with <ID>.msg still in Dir. Cleanup sees
//     data without envelope whose envelope is in failed/ and finishes the
//     move, whatever the data's age.
//   - a lock is never left behind: the kernel drops it with the process.
//
// Cleanup skips every file that is locked, so it never touches a message
// that a live process is writing, delivering or moving, and never removes
// data whose envelope exists. Its age threshold guards only the instant
// between creating a temporary file and locking it: use a minute or more.
package spool
