// mmdbwriter: writes a small MaxMind DB (City layout) with MaxMind's own
// writer, so the controller's reader is tested against a file it did not make.
//
// Usage: mmdbwriter -out FILE [-type GeoLite2-City] < networks.json
// where networks.json is [{"cidr","lat","lon","country","city"}, ...].
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

type network struct {
	CIDR    string  `json:"cidr"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	Country string  `json:"country"`
	City    string  `json:"city"`
}

func record(n network) mmdbtype.Map {
	return mmdbtype.Map{
		"city": mmdbtype.Map{
			"geoname_id": mmdbtype.Uint32(1),
			"names":      mmdbtype.Map{"en": mmdbtype.String(n.City)},
		},
		"country": mmdbtype.Map{
			"geoname_id": mmdbtype.Uint32(2),
			"iso_code":   mmdbtype.String(n.Country),
			"names":      mmdbtype.Map{"en": mmdbtype.String(n.Country)},
		},
		"location": mmdbtype.Map{
			"accuracy_radius": mmdbtype.Uint16(20),
			"latitude":        mmdbtype.Float64(n.Lat),
			"longitude":       mmdbtype.Float64(n.Lon),
		},
	}
}

func main() {
	out := flag.String("out", "", "file to write")
	dbType := flag.String("type", "GeoLite2-City", "database_type in the metadata")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mmdbwriter: -out is required")
		os.Exit(2)
	}
	var nets []network
	if err := json.NewDecoder(os.Stdin).Decode(&nets); err != nil {
		fmt.Fprintln(os.Stderr, "mmdbwriter: networks JSON:", err)
		os.Exit(2)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            *dbType,
		Description:             map[string]string{"en": "PharosVPN test City database"},
		IncludeReservedNetworks: true,
		IPVersion:               6,
		RecordSize:              28,
		Languages:               []string{"en"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mmdbwriter:", err)
		os.Exit(1)
	}
	for _, n := range nets {
		_, ipnet, err := net.ParseCIDR(n.CIDR)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mmdbwriter:", err)
			os.Exit(2)
		}
		if err := tree.Insert(ipnet, record(n)); err != nil {
			fmt.Fprintln(os.Stderr, "mmdbwriter: insert", n.CIDR, ":", err)
			os.Exit(1)
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mmdbwriter:", err)
		os.Exit(1)
	}
	if _, err := tree.WriteTo(f); err != nil {
		fmt.Fprintln(os.Stderr, "mmdbwriter: write:", err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "mmdbwriter:", err)
		os.Exit(1)
	}
}
