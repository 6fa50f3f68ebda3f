package membership

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
)

// newMemberlistLogger adapts memberlist's *log.Logger output to l. Every
// line memberlist writes becomes one slog record at debug level, with
// memberlist's own level ("DEBUG", "INFO", "WARN", "ERR") kept in the
// "ml_level" attribute: memberlist logs routine conditions (a failed probe, a
// refused label, a closed connection during shutdown) as [ERR]/[WARN], so
// raising them above debug would be noise; the Events callback is the
// signal. When l does not log at debug level, memberlist's output is
// discarded without being parsed.
func newMemberlistLogger(l *slog.Logger) *log.Logger {
	if !l.Enabled(context.Background(), slog.LevelDebug) {
		return log.New(io.Discard, "", 0)
	}
	return log.New(mlLogWriter{l}, "", 0)
}

// mlLogWriter turns lines such as "[WARN] memberlist: text" into slog
// records. log.Logger calls Write once per Printf, with the whole line.
type mlLogWriter struct{ l *slog.Logger }

func (w mlLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level = line[1:i]
			line = strings.TrimSpace(line[i+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	w.l.Debug(line, "component", "memberlist", "ml_level", level)
	return len(p), nil
}
