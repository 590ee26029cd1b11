-- wrk script: POST one digits example (batch 1) to the runtime's infer endpoint.
wrk.method = "POST"
wrk.path = "/v2/models/digits/infer"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":[' ..
  '0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,' ..
  '0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]}]}'
