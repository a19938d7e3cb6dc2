package dashboards

// nodeSelFS keeps real filesystems (the host collector already drops
// pseudo file systems; an empty fstype never occurs, but guards joins).
var nodeSelFS = nodeSel + `, fstype!=""`

// Node is the USE-method overview of the chosen nodes: utilisation,
// saturation and errors of CPU, memory, disks, network and filesystems.
func Node() (Dashboard, error) {
	return spec{
		uid:   "vigil-node",
		title: "Vigil / Node overview (USE)",
		desc:  "Utilisation, saturation and errors of each node's CPU, memory, disks, network and filesystems (host collector, node_exporter names).",
		tags:  []string{"node"},
		sections: []section{
			{title: "Summary", panels: []panelB{
				statPanel(panelOpts{title: "Uptime", unit: "s", desc: "Time since the node booted."},
					q(sel(mNodeTime, nodeSel)+" - "+sel(mNodeBootTime, nodeSel), "{{instance}}")),
				statPanel(panelOpts{title: "CPUs", desc: "Logical CPUs."},
					q("count by (instance) ("+sel(mNodeCPUSeconds, nodeSel, `mode="idle"`)+")", "{{instance}}")),
				statPanel(panelOpts{title: "Memory", unit: "bytes", desc: "Total memory."},
					q(sel(mNodeMemTotal, nodeSel), "{{instance}}")),
				statPanel(panelOpts{title: "Collectors failing", desc: "Collectors whose last scrape failed (vigil_collector_success == 0)."},
					q("count by (instance) ("+sel(mCollectorSuccess, nodeSel)+" == 0) or count by (instance) ("+sel(mCollectorSuccess, nodeSel)+") * 0", "{{instance}}")),
			}},
			{title: "CPU", panels: []panelB{
				timeSeries(panelOpts{title: "CPU utilisation", unit: "percentunit", width: 8, desc: "Share of CPU time not idle, per node (U)."},
					q("1 - avg by (instance) (rate("+sel(mNodeCPUSeconds, nodeSel, `mode="idle"`)+rateInterval+"))", "{{instance}}")),
				timeSeries(panelOpts{title: "CPU saturation (load per CPU)", width: 8, desc: "1-minute load average divided by the number of CPUs; above 1 means runnable tasks wait (S)."},
					q(sel(mNodeLoad1, nodeSel)+" / on (instance) count by (instance) ("+sel(mNodeCPUSeconds, nodeSel, `mode="idle"`)+")", "{{instance}}")),
				timeSeries(panelOpts{title: "CPU by mode", unit: "percentunit", width: 8, stacked: true, desc: "Busy CPU time by mode, averaged over CPUs."},
					q("sum by (instance, mode) (rate("+sel(mNodeCPUSeconds, nodeSel, `mode!="idle"`)+rateInterval+")) / on (instance) group_left count by (instance) ("+sel(mNodeCPUSeconds, nodeSel, `mode="idle"`)+")", "{{instance}} {{mode}}")),
			}},
			{title: "Memory", panels: []panelB{
				timeSeries(panelOpts{title: "Memory utilisation", unit: "percentunit", width: 8, desc: "1 - MemAvailable / MemTotal, and swap in use (0 without swap) (U)."},
					q("1 - "+sel(mNodeMemAvailable, nodeSel)+" / "+sel(mNodeMemTotal, nodeSel), "{{instance}}"),
					q("("+sel(mNodeSwapTotal, nodeSel)+" - "+sel(mNodeSwapFree, nodeSel)+") / clamp_min("+sel(mNodeSwapTotal, nodeSel)+", 1)", "{{instance}} swap")),
				timeSeries(panelOpts{title: "Memory saturation (major page faults)", unit: "ops", width: 8, desc: "Major page faults per second: pages read back from disk (S)."},
					q("rate("+sel(mNodeVMStatMajFault, nodeSel)+rateInterval+")", "{{instance}}")),
				timeSeries(panelOpts{title: "OOM kills", width: 8, desc: "Processes killed by the kernel's OOM killer (E)."},
					q("increase("+sel(mNodeVMStatOOMKill, nodeSel)+rateInterval+")", "{{instance}}")),
			}},
			{title: "Disk", panels: []panelB{
				timeSeries(panelOpts{title: "Disk utilisation", unit: "percentunit", width: 8, desc: "Share of time each device was busy (U)."},
					q("rate("+sel(mNodeDiskIOTime, nodeSel)+rateInterval+")", "{{instance}} {{device}}")),
				timeSeries(panelOpts{title: "Disk saturation (queue)", width: 8, desc: "Average number of I/Os in flight: weighted I/O time per second (S)."},
					q("rate("+sel(mNodeDiskIOWeighted, nodeSel)+rateInterval+")", "{{instance}} {{device}}")),
				timeSeries(panelOpts{title: "Disk throughput", unit: "Bps", width: 8, desc: "Bytes read and written per second."},
					q("rate("+sel(mNodeDiskReadBytes, nodeSel)+rateInterval+")", "{{instance}} {{device}} read"),
					q("rate("+sel(mNodeDiskWrittenBytes, nodeSel)+rateInterval+")", "{{instance}} {{device}} written")),
			}},
			{title: "Network", panels: []panelB{
				timeSeries(panelOpts{title: "Network utilisation", unit: "binBps", width: 8, desc: "Bytes received and transmitted per second per interface (U)."},
					q("rate("+sel(mNodeNetRxBytes, nodeSel)+rateInterval+")", "{{instance}} {{device}} rx"),
					q("rate("+sel(mNodeNetTxBytes, nodeSel)+rateInterval+")", "{{instance}} {{device}} tx")),
				timeSeries(panelOpts{title: "Network saturation (drops)", unit: "pps", width: 8, desc: "Packets dropped per second (S)."},
					q("rate("+sel(mNodeNetRxDrop, nodeSel)+rateInterval+")", "{{instance}} {{device}} rx"),
					q("rate("+sel(mNodeNetTxDrop, nodeSel)+rateInterval+")", "{{instance}} {{device}} tx")),
				timeSeries(panelOpts{title: "Network errors", unit: "pps", width: 8, desc: "Receive and transmit errors per second (E)."},
					q("rate("+sel(mNodeNetRxErrs, nodeSel)+rateInterval+")", "{{instance}} {{device}} rx"),
					q("rate("+sel(mNodeNetTxErrs, nodeSel)+rateInterval+")", "{{instance}} {{device}} tx")),
			}},
			{title: "Filesystems", panels: []panelB{
				timeSeries(panelOpts{title: "Filesystem space used", unit: "percentunit", width: 8, desc: "1 - available / size, per mount point (U)."},
					q("1 - "+sel(mNodeFSAvail, nodeSelFS)+" / "+sel(mNodeFSSize, nodeSelFS), "{{instance}} {{mountpoint}}")),
				timeSeries(panelOpts{title: "Inodes used", unit: "percentunit", width: 8, desc: "1 - free inodes / inodes, per mount point (S: a full inode table refuses new files)."},
					q("1 - "+sel(mNodeFSFilesFree, nodeSelFS)+" / ("+sel(mNodeFSFiles, nodeSelFS)+" > 0)", "{{instance}} {{mountpoint}}")),
				tablePanel(panelOpts{title: "Filesystem errors", width: 8, desc: "Mounts that could not be stat'ed (device_error says why) or are read-only (E)."},
					q("max by (instance, mountpoint, device_error) ("+sel(mNodeFSDeviceError, nodeSel)+")", ""),
					q("max by (instance, mountpoint) ("+sel(mNodeFSReadonly, nodeSel)+")", "")),
			}},
		},
	}.build()
}
