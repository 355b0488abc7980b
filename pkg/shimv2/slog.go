package shimv2

import (
	"context"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// logrusHandler sends the sandbox's slog records to the shim library's
// logrus entry, which containerd collects into its own log.
type logrusHandler struct {
	entry *logrus.Entry
	attrs []slog.Attr
}

var _ slog.Handler = logrusHandler{}

func levelOf(l slog.Level) logrus.Level {
	switch {
	case l >= slog.LevelError:
		return logrus.ErrorLevel
	case l >= slog.LevelWarn:
		return logrus.WarnLevel
	case l >= slog.LevelInfo:
		return logrus.InfoLevel
	}
	return logrus.DebugLevel
}

func (h logrusHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.entry.Logger.IsLevelEnabled(levelOf(l))
}

func (h logrusHandler) Handle(_ context.Context, r slog.Record) error {
	fields := logrus.Fields{}
	for _, a := range h.attrs {
		fields[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		fields[a.Key] = a.Value.Any()
		return true
	})
	h.entry.WithFields(fields).Log(levelOf(r.Level), r.Message)
	return nil
}

func (h logrusHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logrusHandler{entry: h.entry, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h logrusHandler) WithGroup(string) slog.Handler { return h }
