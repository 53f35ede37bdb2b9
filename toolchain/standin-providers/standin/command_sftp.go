package standin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pkg/sftp"
)

// remoteStat returns nil, nil when path does not exist.
func remoteStat(files *sftp.Client, p string) (fs.FileInfo, error) {
	info, err := files.Stat(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("failed to stat remote path %s: %w", p, err)
	}
	return info, nil
}

// copyText writes a text asset to the file remotePath, creating its parent directories.
func copyText(files *sftp.Client, text, remotePath string) error {
	info, err := remoteStat(files, remotePath)
	if err != nil {
		return err
	}
	if info != nil && info.IsDir() {
		return fmt.Errorf("remote path %s is a directory; when using a text asset, remotePath must be a file path", remotePath)
	}
	if err := files.MkdirAll(path.Dir(remotePath)); err != nil {
		return fmt.Errorf("failed to create parent directories for %s: %w", remotePath, err)
	}
	remote, err := files.Create(remotePath)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", remotePath, err)
	}
	defer remote.Close()
	if _, err := remote.Write([]byte(text)); err != nil {
		return fmt.Errorf("failed to write text content to remote path %s: %w", remotePath, err)
	}
	return nil
}

// copyPath copies a local file or directory the way the real provider does:
//
//	source | remotePath is a directory | does not exist | is a file
//	dir    | remotePath/dir            | remotePath/dir | error
//	dir/   | remotePath/<each entry>   | remotePath     | error
//	file   | remotePath/file           | remotePath     | remotePath (overwritten)
func copyPath(files *sftp.Client, source, remotePath string) error {
	local, err := os.Open(source)
	if err != nil {
		return err
	}
	info, err := local.Stat()
	_ = local.Close()
	if err != nil {
		return err
	}
	dest, err := remoteStat(files, remotePath)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		target := remotePath
		if dest != nil && dest.IsDir() {
			target = path.Join(remotePath, filepath.Base(source))
		} else if dest == nil {
			if err := files.MkdirAll(path.Dir(remotePath)); err != nil {
				return fmt.Errorf("failed to create parent directories for %s: %w", remotePath, err)
			}
		}
		return copyFile(files, source, target)
	}
	if dest == nil {
		if err := files.MkdirAll(remotePath); err != nil {
			return fmt.Errorf("failed to create remote directory %s: %w", remotePath, err)
		}
	}
	target := remotePath
	if !strings.HasSuffix(source, "/") {
		target = path.Join(remotePath, filepath.Base(source))
		inner, err := remoteStat(files, target)
		if err != nil {
			return err
		}
		if inner != nil && !inner.IsDir() {
			return fmt.Errorf("remote path %s exists but is not a directory", target)
		}
		if inner == nil {
			if err := files.Mkdir(target); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", target, err)
			}
		}
	}
	return copyDir(files, source, target)
}

func copyFile(files *sftp.Client, source, remotePath string) error {
	local, err := os.Open(source)
	if err != nil {
		return err
	}
	defer local.Close()
	remote, err := files.Create(remotePath)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", remotePath, err)
	}
	defer remote.Close()
	if _, err := remote.ReadFrom(local); err != nil {
		return fmt.Errorf("failed to copy file %s to remote path %s: %w", source, remotePath, err)
	}
	return nil
}

// copyDir copies the tree under source into remotePath, one entry after the other.
func copyDir(files *sftp.Client, source, remotePath string) error {
	return fs.WalkDir(os.DirFS(source), ".", func(rel string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := path.Join(remotePath, rel)
		if !entry.IsDir() {
			return copyFile(files, filepath.Join(source, rel), target)
		}
		info, err := remoteStat(files, target)
		if err != nil {
			return err
		}
		if info == nil {
			if err := files.Mkdir(target); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", target, err)
			}
		} else if !info.IsDir() {
			return fmt.Errorf("remote path %s exists but is not a directory", target)
		}
		return nil
	})
}
