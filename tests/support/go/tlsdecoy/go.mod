module pharos.test/tlsdecoy

go 1.24
